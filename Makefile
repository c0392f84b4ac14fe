# fmoe — see README.md. Targets: build, test, demo, bench, lint, ui-test.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin
DEMO := build/fmoe-tiny-chat
# A number of executions, not a duration: with a time limit Go's fuzz coordinator sometimes reports its
# own deadline ("context deadline exceeded") as a failure when it lands while a worker is mid-call
# (CI, stop 27, after 66,171 executions and nothing new found); a count has no deadline to race.
FUZZTIME ?= 50000x
# Minimising a new input runs inside the fuzz time: by the default (60 s) a large seed's minimisation
# outlasts FUZZTIME and the run fails with "context deadline exceeded"; a bounded number of tries instead.
FUZZMIN ?= 100x

.PHONY: build test demo bench bench-pack bench-decode lint fuzz clean metal-check ui-test arm64-check

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The whole suite, a part of it under the race detector, then each fuzz target for a few seconds.
test:
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -tags purego ./runtime/backend/cpu/
	@# The CPU share's task across the pool's workers and the pointer arithmetic of the logits
	@# check, under the race detector and checkptr (~15 s; the whole suite under -race takes minutes).
	$(GO) test -count=1 -race -run 'AllFinite|StartExperts|WaitExperts' ./runtime/backend/ ./runtime/backend/cpu/
	$(MAKE) --no-print-directory arm64-check
	$(MAKE) --no-print-directory fuzz

# The CPU backend's tests (conformance suite included) built for arm64 and run under
# qemu-aarch64 (Debian package qemu-user; .ci/run installs it), twice: with the NEON kernels
# (kern_arm64.s) that Apple Silicon and Graviton machines run, and with -tags purego, the
# pure-Go fallback; then the model's goldens on the NEON kernels.
arm64-check:
	@mkdir -p build
	GOARCH=arm64 $(GO) vet ./runtime/backend/cpu/
	GOARCH=arm64 $(GO) vet -tags purego ./runtime/backend/cpu/
	GOARCH=arm64 $(GO) test -c -o build/cpu.arm64.test ./runtime/backend/cpu/
	GOARCH=arm64 $(GO) test -c -tags purego -o build/cpu.arm64.purego.test ./runtime/backend/cpu/
	GOARCH=arm64 $(GO) test -c -o build/model.arm64.test ./runtime/model/
	@# Without qemu-aarch64 a developer's make test says so and goes on; CI (.ci/run installs it) fails.
	@if command -v qemu-aarch64 >/dev/null; then \
		qemu-aarch64 build/cpu.arm64.test -test.count=1 && \
		qemu-aarch64 build/cpu.arm64.purego.test -test.count=1 && \
		(cd runtime/model && qemu-aarch64 ../../build/model.arm64.test -test.count=1 -test.short \
			-test.run 'TestGoldenPrefill|TestGoldenGenerate|TestFamilyGolden'); \
	elif [ -n "$$CI" ]; then echo "arm64-check: qemu-aarch64 not found (.ci/run installs Debian's qemu-user)" >&2; exit 1; \
	else echo "arm64-check: SKIPPED running the arm64 tests: qemu-aarch64 not found (Debian: apt-get install -y qemu-user)" >&2; fi

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./format/
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./format/
	$(GO) test -run '^$$' -fuzz '^FuzzSafetensorsHeader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./pack/
	$(GO) test -run '^$$' -fuzz '^FuzzFormatParsers$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./chat/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./runtime/routetrace/
	$(GO) test -run '^$$' -fuzz '^FuzzPrepare$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./server/

# The main job on the built-in model: pack -> verify -> generate, then a chat that answers the
# model's tool call with a result typed on standard input.
demo: build
	$(BIN)/fmoe-pack convert --in models/fmoe-tiny-chat/mlx-4bit --out $(DEMO) --force
	$(BIN)/fmoe-verify --model $(DEMO)
	$(BIN)/fmoe-run generate --model $(DEMO) --prompt "What's the weather in Paris?" --tools models/fmoe-tiny-chat/tools.json --tokens 64
	printf '%s\n' "What's the weather in Paris?" '{"temp": 18, "condition": "sunny"}' | \
		$(BIN)/fmoe-run chat --model $(DEMO) --tools models/fmoe-tiny-chat/tools.json --no-bash --hide-reasoning

# The chat page (GET /) in headless Chromium against fmoe-run serve on the built-in model: a tool
# call, a streamed answer, the stop button, hostile markup shown as text; screenshots in build/ui/.
# Skips, saying so, where no chromium is installed (Debian: apt-get install -y chromium).
ui-test: build
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		echo "ui-test: SKIPPED: no chromium on PATH (Debian: apt-get install -y chromium)"; exit 0; fi; \
	set -e; \
	$(BIN)/fmoe-pack convert --in models/fmoe-tiny-chat/mlx-4bit --out $(DEMO) --force; \
	FMOE_UI_BIN=$(CURDIR)/$(BIN)/fmoe-run FMOE_UI_MODEL=$(CURDIR)/$(DEMO) \
		$(GO) test -tags uitest -count=1 -v -run '^TestBrowser$$' ./server/web/

# Benchmarks write tens of GB under /tmp (see each script's header); results go to stdout and are
# recorded with the machine in docs/benchmarks.md. The GPU benchmark is scripts/gpu-bench.sh.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./quant/ ./runtime/model/ ./tokenizer/ ./chat/
	$(GO) test -run '^$$' -bench . -benchtime 200x -count 3 ./runtime/backend/cpu/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./pack/ ./verify/
	scripts/bench-pack.sh
	GO=$(GO) scripts/bench-decode.sh

bench-pack: build
	scripts/bench-pack.sh

bench-decode: build
	GO=$(GO) scripts/bench-decode.sh

# Metal backend checks that need no Mac (g++ or clang required); see docs/metal.md.
metal-check:
	$(GO) test -count=1 -v -run 'Prelude|SameKernels|Parses|Rejects|NoCUDA|ThreadIds|ConformanceSim|SimulatorBarriers|CrossBuild|ObjC|FamilyGoldenSim' ./runtime/backend/metal
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./runtime/backend/metal ./shaders

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags uitest ./server/web/

clean:
	rm -rf $(BIN) build
