package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/tokenizer"
)

// modelFlags are shared by every command that opens a model.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Usage: "packed model `DIR` (made by fmoe-pack convert)", Required: true},
		&cli.IntFlag{Name: "k", Usage: "routed experts per token (default: the model's; fewer reads less from disk, at some quality cost)"},
		&cli.BoolFlag{Name: "2bit", Usage: "stream the 2-bit expert set (made by fmoe-pack requant --bits 2)"},
		&cli.IntFlag{Name: "threads", Usage: "CPU threads per op (default: all cores)"},
		&cli.StringFlag{Name: "backend", Value: "auto", Usage: "compute backend: auto (a GPU when present, else the CPU), cpu, cuda or metal"},
		&cli.StringFlag{Name: "gpu-cache", Value: "auto", Usage: "`SIZE` of the GPU tier: routed experts kept in device memory across tokens (CUDA; e.g. 40G, 512M); auto takes the free device memory less what the context needs, 0 turns it off"},
		&cli.StringFlag{Name: "host-cache", Value: "0", Usage: "`SIZE` of the host tier: experts the GPU tier misses kept in pinned host memory (CUDA) and bound with one DMA, no read; pinned at start, at most the model's experts and a few spare slots (a larger SIZE is cut to that; --timing shows the tier's); 0 (default) leaves caching to the OS page cache"},
		&cli.BoolFlag{Name: "verbose", Usage: "say in full why a backend was or was not chosen"},
		&cli.StringFlag{Name: "gpus", Value: "all", Usage: "`LIST` of devices to split the routed experts over, such as 0,1 (CUDA: device numbers, joined by NCCL; the CPU: logical devices in one process); all takes every visible GPU (one on the CPU and Metal)"},
		preloadFlag,
		cpuExpertsFlag,
		&cli.IntFlag{Name: "prefetch", Usage: "predict each layer's experts `N` layers ahead (the model's own router run on an earlier layer's input) and copy those the GPU tier lacks from the host tier while the layers before compute (CUDA, with --host-cache; 0, the default, is off). A wrong guess costs link time, never a wrong result; measured in docs/benchmarks.md run 11 (N=1: 9-11% off a layer with misses at 77% of picks predicted); at K=10, N=2 is 3-6% faster than N=1 (runs 23 and 27), at K=4 the same"},
		&cli.StringFlag{Name: "expert-load", Usage: "routing trace `FILE` (docs/route-trace.md: one recorded from this model's runs with fmoe-run generate --record-route, or a synthetic one from fmoe-pack route-trace) whose per-expert counts place the experts over several --gpus, balanced by load; it must have the model's layers and experts (default: the --route-trace being replayed, else evenly by number)"},
	}
}

// openModel opens the model on the backends the flags pick. Those stay
// the command's (model.Options.Backend is the caller's), so the returned
// done closes the model and then them: CUDA's Close frees the device's
// memory and writes FMOE_CUDA_TRACE's timeline, which a run that ends
// without it never had.
func openModel(c *cli.Context) (*model.Model, func() error, error) {
	m, bes, err := openModelOn(c)
	if err != nil {
		return nil, nil, err
	}
	done := func() error {
		errs := []error{m.Close()}
		for _, be := range bes {
			errs = append(errs, be.Close())
		}
		return errors.Join(errs...)
	}
	return m, done, nil
}

// closeModel runs openModel's done where a command has no error left to
// return it in: a timeline that could not be written is still said.
func closeModel(done func() error) {
	if err := done(); err != nil {
		fmt.Fprintln(os.Stderr, "fmoe-run: closing the model:", err)
	}
}

func openModelOn(c *cli.Context) (*model.Model, []backend.Backend, error) {
	// Commands without a --direct-io or --lz4 flag read them as false.
	o := model.Options{ExpertsPerToken: c.Int("k"), DirectIO: c.Bool("direct-io"), LZ4: c.Bool("lz4")}
	if c.Bool("2bit") {
		o.ExpertBits = 2
	}
	gc, err := parseCacheSize(c.String("gpu-cache"))
	if err != nil {
		return nil, nil, cliutil.UsageError("--gpu-cache: %v", err)
	}
	o.GPUCache = gc
	if err := checkPreload(c, gc, nil); err != nil {
		return nil, nil, err
	}
	hc, err := parseCacheSize(c.String("host-cache"))
	if err != nil || c.String("host-cache") == "auto" {
		return nil, nil, cliutil.UsageError("--host-cache: %q is not a size (want 0 or a number of bytes such as 48G)", c.String("host-cache"))
	}
	o.HostCache = max(hc, 0) // "0" parses as GPUCacheOff
	if n := c.Int("prefetch"); n < 0 {
		return nil, nil, cliutil.UsageError("--prefetch: %d layers ahead (want 0, off, or more)", n)
	} else if n > 0 {
		o.Prefetch, o.PrefetchAhead = true, n
	}
	if o.PrefetchPace, err = prefetchPace(); err != nil {
		return nil, nil, err
	}
	bes, load, err := openDevices(c, &o)
	if err == nil {
		err = checkPreload(c, gc, bes)
	}
	if err == nil {
		var mb backend.Backend
		if mb, err = cpuExperts(c, &o); mb != nil {
			bes = append(bes, mb)
		}
	}
	var m *model.Model
	if err == nil {
		m, err = model.Open(c.String("model"), o)
	}
	if err == nil {
		if err = m.PrefetchCheck(); err != nil {
			m.Close()
			m, err = nil, cliutil.UsageError("--prefetch: %v", err)
		}
	}
	if err == nil && c.Bool("preload") {
		if err = preload(m, load, os.Stderr, cliutil.ProgressWriter(false)); err != nil {
			m.Close()
		}
	}
	if err != nil {
		for _, be := range bes {
			be.Close()
		}
		return nil, nil, err
	}
	return m, bes, nil
}

func generateCmd() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "generate a reply (or a raw continuation) and stream it to stdout",
		UsageText: "fmoe-run generate --model DIR (--prompt TEXT | --ids 1,2,3) [--tokens N] [--show-reasoning | --raw] [--k K] [--2bit] [--temperature T] [--top-p P] [--top-k N] [--seed S] [--threads N] [--timing] [--direct-io | --lz4] [--gpus LIST [--expert-load FILE]] [--route-trace FILE] [--record-route FILE]",
		Description: `--prompt is sent as a user message through the model's own chat template (with --system and
--tools when given), so a chat model answers it, and the reply is shown as fmoe-run chat shows it:
the answer, and each tool call as name({"arg":"value"}); the model's reasoning is left out unless
--show-reasoning (dimmed on a terminal). --raw prints the generated text as it is, markup
included. --no-template feeds --prompt as plain text and prints the raw continuation. --ids feeds
token ids as they are and prints ids. Sampling is greedy unless --temperature is above 0.
Generation stops at the model's end tokens or after --tokens tokens. generate makes one reply: a
tool call ends it (fmoe-run chat runs tools and continues the conversation).

--timing prints to stderr, after the reply, where the forward time went per layer (attention or
GatedDeltaNet, routing, waiting for expert reads, expert compute, shared expert) and per token
(embedding, lm_head), for prefill and decode separately, with the bytes read from the expert files
per token and the share of those reads the page cache served (checked with mincore before each
read). --direct-io reads experts around the page cache (O_DIRECT on Linux, F_NOCACHE on macOS),
so every read goes to the disk. --lz4 reads the experts from the LZ4 copy fmoe-pack lz4 makes
(packed_experts_lz4/; with --2bit the 2-bit set's copy, made by fmoe-pack lz4 --bits 2) and
decompresses each one: the LZ4 experiment end to end (docs/negative-results.md).

--preload fills the GPU tier (--gpu-cache, CUDA) before the prompt, as llama.cpp's -ngl 99 loads
its weights at start: as many experts as the tier holds, the same number in each layer, the most
picked first by --expert-load's counts when given. It prints how many it loaded and how long that
took on a line of its own, so neither the prompt's time nor --timing's prefill includes the load.

--route-trace FILE is for benchmarks only: the router still runs, but the experts and weights
used at each token position and layer are the trace's (fmoe-pack route-trace writes traces with
the 397B's measured routing statistics; docs/route-trace.md). The trace must match the model's
layers, experts and K (--k) and cover the prompt plus --tokens − 1 positions (the last token
generated is never fed back; a trace is never wrapped around); the text generated is meaningless.

--record-route FILE writes the routing this run actually used: for every position of the prompt
and of the tokens fed back, at every layer, the K experts and weights (docs/route-trace.md, model
"recorded"). It changes nothing the run computes. Replayed with --route-trace and the same
prompt, settings and --tokens (or fewer), it gives the same tokens; its per-expert counts place a
real model's experts by its real load (--expert-load); fmoe-pack route-stats prints its cache
statistics. FILE must not exist; it is written when the run ends (through a temporary name).

--gpus 0,1 splits each layer's routed experts over those devices (the tokens are the same as on
one; docs/scaling.md): evenly by number, or by the per-expert counts of the routing trace
--expert-load names, heaviest experts spread first. The trace must have the model's layers and
experts. Record one from this model's own runs with --record-route (its counts are this model's
real load on those prompts); fmoe-pack route-trace writes synthetic ones, whose counts come from a
statistical model of routing, not from this model, so they balance a benchmark's replayed load
(--route-trace), not a real run's. --gpus and --expert-load work the same in chat, serve and eval.

Examples:
   fmoe-run generate --model build/fmoe-tiny-chat --prompt "What's the weather in Paris?" \
       --tools models/fmoe-tiny-chat/tools.json
   fmoe-run generate --model ~/models/q35-fmoe --prompt "Hello" --gpus 0,1`,
		Flags: append(append(modelFlags(), samplingFlags()...),
			&cli.StringFlag{Name: "prompt", Usage: "the user's `TEXT`"},
			&cli.StringFlag{Name: "ids", Usage: "comma-separated token `IDS` to feed instead of a prompt"},
			&cli.BoolFlag{Name: "raw", Usage: "print the generated text as it is (reasoning and tool-call markup included)"},
			&cli.BoolFlag{Name: "no-template", Usage: "feed --prompt as plain text, without the chat template (prints the raw text)"},
			&cli.BoolFlag{Name: "show-reasoning", Usage: "print the model's reasoning (dimmed on a terminal)"},
			&cli.StringFlag{Name: "system", Usage: "system message `TEXT`"},
			&cli.StringFlag{Name: "tools", Usage: "OpenAI-format tools JSON `FILE` offered to the model"},
			&cli.BoolFlag{Name: "no-think", Usage: "render the template with thinking disabled"},
			&cli.IntFlag{Name: "tokens", Value: 256, Usage: "maximum new tokens"},
			&cli.BoolFlag{Name: "timing", Usage: "print a per-layer time breakdown, expert bytes read and page-cache hits to stderr"},
			&cli.BoolFlag{Name: "direct-io", Usage: "read experts around the page cache (O_DIRECT; F_NOCACHE on macOS)"},
			&cli.BoolFlag{Name: "lz4", Usage: "read experts from the LZ4 copy (made by fmoe-pack lz4) and decompress them"},
			routeTraceFlag,
			recordRouteFlag,
		),
		Action: runGenerate,
	}
}

func runGenerate(c *cli.Context) error {
	if c.IsSet("prompt") == c.IsSet("ids") {
		return cliutil.UsageError("give exactly one of --prompt and --ids")
	}
	if c.Bool("lz4") && c.Bool("direct-io") {
		return cliutil.UsageError("--lz4 and --direct-io cannot be combined: the LZ4 copy's blocks are not block-aligned")
	}
	smp, err := sampler(c)
	if err != nil {
		return err
	}
	if c.Bool("raw") && c.Bool("show-reasoning") {
		return cliutil.UsageError("--raw prints the reasoning as it is: use it without --show-reasoning")
	}
	if err := checkRecordRoute(c); err != nil {
		return err
	}
	dir := c.String("model")
	m, done, err := openModel(c)
	if err != nil {
		return err
	}
	defer closeModel(done)
	var tok *tokenizer.Tokenizer
	var prompt []int
	var text string
	var tools []chat.Tool
	if c.IsSet("ids") {
		if prompt, err = parseIDs(c.String("ids"), m.Config.VocabSize); err != nil {
			return cliutil.UsageError("--ids: %v", err)
		}
	} else {
		if tok, err = tokenizer.LoadDir(dir); err != nil {
			return err
		}
		if text, tools, err = promptText(c, dir); err != nil {
			return err
		}
		prompt = tok.Encode(text)
	}
	if len(prompt) == 0 {
		return cliutil.UsageError("the prompt is empty")
	}
	if max := m.Config.MaxPositionEmbeddings; len(prompt)+c.Int("tokens") > max {
		return fmt.Errorf("prompt of %d tokens plus --tokens %d exceeds the context of %d tokens", len(prompt), c.Int("tokens"), max)
	}
	sess, err := m.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	// The last token generated is never fed back, so the run routes the
	// prompt plus --tokens − 1 positions.
	if err := useRouteTrace(c, m, sess, len(prompt)+max(c.Int("tokens")-1, 0)); err != nil {
		return err
	}
	rec, err := recordRoute(c, m, sess)
	if err != nil {
		return err
	}
	if c.Bool("timing") {
		sess.Timing = &model.Timing{}
	}
	format := chatFormat(dir)
	stop := stopTokens(m, tok, format)
	parse := !c.Bool("raw") && !c.Bool("no-template")
	w := newReplyWriter(os.Stdout, tok, stop, parse, tools, format, text, c.Bool("show-reasoning"))
	start := time.Now()
	var first, fwd0 time.Duration
	var steps []time.Duration // each decode step's forward, for the median
	out, err := sess.Generate(prompt, c.Int("tokens"), &smp, stop, func(id int) bool {
		if first == 0 {
			first = time.Since(start)
			fwd0 = sess.ForwardTime()
		} else {
			steps = append(steps, sess.LastForwardTime())
		}
		w.token(id)
		return true
	})
	w.close()
	if err != nil {
		return err
	}
	if err := saveRecordedRoute(c, rec, len(prompt)); err != nil {
		return err
	}
	total := time.Since(start)
	decode := total - first
	n := float64(max(len(out)-1, 0))
	fmt.Fprintf(os.Stderr, "%d prompt tokens in %.2fs (%.1f tok/s), %d generated in %.2fs (%.2f tok/s; median step %.3f ms; p10 %.3f, p90 %.3f ms; forward alone %.2f tok/s)\n",
		len(prompt), first.Seconds(), float64(len(prompt))/first.Seconds(),
		len(out), decode.Seconds(), n/max(decode.Seconds(), 1e-9), medianMs(steps), percentileMs(steps, 10), percentileMs(steps, 90),
		n/max((sess.ForwardTime()-fwd0).Seconds(), 1e-9))
	if sess.Timing != nil {
		sess.Timing.Report(os.Stderr)
	}
	if w.calls > 0 {
		fmt.Fprintln(os.Stderr, "(the reply ends at a tool call: fmoe-run chat --tools FILE runs it and continues)")
	}
	return nil
}

// promptText renders --prompt through the chat template unless
// --no-template, and returns the tools it offered.
func promptText(c *cli.Context, dir string) (string, []chat.Tool, error) {
	if c.Bool("no-template") {
		return c.String("prompt"), nil, nil
	}
	tpl, err := chat.LoadTemplate(dir)
	if err != nil {
		return "", nil, fmt.Errorf("%v (use --no-template to feed the prompt without a chat template)", err)
	}
	var msgs []chat.Message
	if s := c.String("system"); s != "" {
		msgs = append(msgs, chat.Message{Role: "system", Content: s})
	}
	msgs = append(msgs, chat.Message{Role: "user", Content: c.String("prompt")})
	var tools []chat.Tool
	if f := c.String("tools"); f != "" {
		var err error
		if tools, err = readTools(f); err != nil {
			return "", nil, err
		}
	}
	opts := chat.RenderOptions{AddGenerationPrompt: true}
	if c.Bool("no-think") {
		f := false
		opts.EnableThinking = &f
	}
	text, err := tpl.Render(msgs, tools, opts)
	return text, tools, err
}

// chatFormat is the markup of the model's chat template: its end-of-turn
// tokens and its tool calls (Qwen's when the model has no template).
func chatFormat(dir string) *chat.Format {
	if tpl, err := chat.LoadTemplate(dir); err == nil {
		return tpl.Format()
	}
	return chat.FormatQwen
}

// stopTokens are the config's end-of-sequence ids plus the chat format's end-of-turn tokens the
// tokenizer knows.
func stopTokens(m *model.Model, tok *tokenizer.Tokenizer, format *chat.Format) []int {
	stop := append([]int(nil), m.Config.EOSTokenIDs...)
	if tok != nil {
		for _, s := range format.StopTokens {
			if id, ok := tok.TokenID(s); ok && !containsID(stop, id) {
				stop = append(stop, id)
			}
		}
	}
	return stop
}

func containsID(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// percentileMs is the p-th percentile (nearest rank) of the steps' times in
// milliseconds (0 for none): beside the median, whether a run's steps are
// all alike or spread (the peer bench's runs of one pack moved ~20%
// between runs, peer run 12).
func percentileMs(steps []time.Duration, p float64) float64 {
	return rankMs(steps, func(n int) int { return int(math.Ceil(p/100*float64(n))) - 1 })
}

// medianMs is the median of the steps' times in milliseconds (0 for none):
// a decode rate that one slow step (a page fault, a collector pause) does
// not move, for comparing runs a few hundred steps long.
func medianMs(steps []time.Duration) float64 {
	return rankMs(steps, func(n int) int { return n / 2 })
}

// rankMs is the step of index rank(n) among the n steps in ascending order
// (clamped to them), in milliseconds; 0 for none. The caller's order stays.
func rankMs(steps []time.Duration, rank func(n int) int) float64 {
	if len(steps) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(steps))
	return float64(s[min(max(rank(len(s)), 0), len(s)-1)]) / 1e6
}
