# fmoe — see README.md. Targets: build, test, demo, bench, lint.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin
DEMO := build/fmoe-tiny-chat
FUZZTIME ?= 3s

.PHONY: build test demo bench bench-pack lint fuzz clean metal-check

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The whole suite, then each fuzz target for a few seconds.
test:
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(MAKE) --no-print-directory fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./format/
	$(GO) test -run '^$$' -fuzz '^FuzzSafetensorsHeader$$' -fuzztime $(FUZZTIME) ./pack/

# The main job on the built-in model: pack -> verify -> generate.
demo: build
	$(BIN)/fmoe-pack convert --in models/fmoe-tiny-chat/mlx-4bit --out $(DEMO) --force
	$(BIN)/fmoe-verify --model $(DEMO)
	$(BIN)/fmoe-run generate --model $(DEMO) --prompt "What's the weather in Paris?" --tools models/fmoe-tiny-chat/tools.json --tokens 64

# Benchmarks write tens of GB under BENCH_DIR (default /tmp/fmoe-bench); results go to stdout
# and are recorded by hand in docs/benchmarks.md with the machine.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2x ./quant/ ./runtime/... 2>/dev/null || true
	scripts/bench-pack.sh

bench-pack: build
	scripts/bench-pack.sh

# Metal backend checks that need no Mac (g++ or clang required); see docs/metal.md.
metal-check:
	$(GO) test -count=1 -v -run 'Prelude|SameKernels|Parses|Rejects|NoCUDA|ThreadIds|ConformanceSim|CrossBuild|ObjC' ./runtime/backend/metal
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./runtime/backend/metal ./shaders

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf $(BIN) build
