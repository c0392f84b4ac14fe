package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/internal/progress"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/model"
)

var preloadFlag = &cli.BoolFlag{Name: "preload", Usage: "load experts into the GPU tier before the first token (as many as --gpu-cache holds), and the rest into the host tier (as many as --host-cache holds), as llama.cpp's -ngl 99 loads its weights at start; prints how many"}

// checkPreload refuses --preload where there is no GPU tier to load into:
// --gpu-cache 0, or backends that keep none (bes nil: not opened yet).
func checkPreload(c *cli.Context, gpuCache int64, bes []backend.Backend) error {
	if !c.Bool("preload") {
		return nil
	}
	if gpuCache == model.GPUCacheOff {
		return cliutil.UsageError("--preload loads experts into the GPU tier, and --gpu-cache 0 turns it off: give --gpu-cache a size (or auto), or drop --preload")
	}
	for _, be := range bes {
		if _, ok := be.(backend.ExpertCache); ok {
			return nil
		}
	}
	if len(bes) == 0 {
		return nil
	}
	name, _, _ := strings.Cut(bes[0].Name(), "(") // "cpu(avx512, 2 threads)"
	return cliutil.UsageError("--preload loads experts into the GPU tier, and backend %s keeps none (it reads experts through the OS page cache): use it with --backend cuda, or drop --preload", name)
}

// preload fills the GPU tiers (model.Preload), most loaded experts first
// when load is given, with a bar on bar (nil: none), and says on w how
// many experts it loaded and how long that took: its own line, before
// the prompt, so that --timing's prefill does not include it.
func preload(m *model.Model, load [][]int64, w, bar io.Writer) error {
	ctx, stop := cliutil.SignalContext()
	defer stop()
	var pb *progress.Bar
	t0 := time.Now()
	st, err := m.Preload(ctx, model.PreloadOptions{Load: load, Progress: func(done, total int) {
		if pb == nil {
			pb = progress.NewCount(bar, int64(total), "preloading experts", "experts")
		}
		pb.Add(1)
	}})
	if err != nil {
		if pb != nil {
			fmt.Fprintln(bar) // end the bar's line
		}
		if errors.Is(err, context.Canceled) {
			return errors.New("--preload: interrupted")
		}
		return fmt.Errorf("--preload: %w", err)
	}
	pb.Finish()
	fmt.Fprintln(w, preloadLine(st, time.Since(t0)))
	return nil
}

// preloadLine says what Preload loaded, and, when the tier could not hold
// every expert, that the rest is read on first use.
func preloadLine(st model.PreloadStats, d time.Duration) string {
	s := fmt.Sprintf("preload: %d of %d experts (%s) in the GPU tier in %.2fs", st.Experts, st.Total, sizeString(st.Bytes), d.Seconds())
	if st.HostExperts > 0 {
		s += fmt.Sprintf(", %d more in the host tier", st.HostExperts)
	}
	switch {
	case st.Unheld > 0:
		s += fmt.Sprintf("; the device ran out of memory before --gpu-cache's budget did (%d experts the budget allowed were not kept): the other %d are read on first use",
			st.Unheld, st.Total-st.Experts)
	case st.Experts+st.HostExperts < st.Total && st.HostExperts > 0:
		s += fmt.Sprintf("; the two tiers hold no more, the other %d are read on first use", st.Total-st.Experts-st.HostExperts)
	case st.Experts < st.Total && st.HostExperts == 0:
		s += fmt.Sprintf("; --gpu-cache holds no more, the other %d are read on first use", st.Total-st.Experts)
	}
	return s
}

// sizeString is n bytes in GiB, or MiB below one GiB.
func sizeString(n int64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
