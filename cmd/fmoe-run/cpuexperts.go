package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/model"
)

var cpuExpertsFlag = &cli.StringFlag{Name: "cpu-experts", Value: "0", Usage: "`SHARE` (0 to 1, or auto) of the experts the GPU tier misses that the CPU computes from the host tier, on --threads cores, while the others cross the link to the GPU, in each generated token (a prompt's experts all go to the GPU, where many tokens share each copy; in a layer the GPU tier holds in part, the share of that layer's misses is rounded, so a lone miss at 0.4 stays on the link) (CUDA with --host-cache, one GPU; 0, the default, is off). It pays where the link is the limit and the CPU reads RAM at a good part of the link's rate. auto, the one to use, starts at 0.3 and follows the CPU's and the link's rates measured in each layer, so that both finish together (kept between 0.05 and 0.9; --timing shows where it settled; which expert goes where then depends on timing, so a GPU's output may differ in its last bits from run to run). Measured in docs/benchmarks.md with every expert from the host tier on 16 cores: on an H200 host auto took 37% off a K=10 token and 12% off a K=4 one against no share (settling at 0.56 and 0.40), 8-10% more than a fixed 0.4 at K=10; 0.4 took 13% and 32% off a K=10 layer on two H100 hosts; the share as one task of the CPU's threads, woken at once (run 30), took 13% more off a K=4 and a K=10 token on an H100 host. Beside llama.cpp with every expert in RAM, auto puts fmoe 1.39x ahead at K=10 and 1.37x at K=4 (peer run 17, H100 host). Beside a GPU tier that holds most experts it has not paid (a wash on an H200 host, 10-23% slower on H100 ones: a share of one or two experts costs the CPUs their wake, and the experts it computes stay out of the GPU tier), so leave it off there. --timing's cpu_share_wait is how long the GPU waited for the CPU's share: well above 0, lower a fixed share"}

// cpuExperts sets up --cpu-experts: a CPU backend as o's miss backend
// computing that share of each one-token step's GPU-tier misses. It
// returns the backend (the caller's to close) or nil when the flag is off.
func cpuExperts(c *cli.Context, o *model.Options) (backend.Backend, error) {
	return cpuExpertsFrom(c.String("cpu-experts"), c.Int("threads"), o)
}

// cpuExpertsFrom is cpuExperts on the flag's value v: a share, or auto.
func cpuExpertsFrom(v string, threads int, o *model.Options) (backend.Backend, error) {
	v = strings.TrimSpace(v)
	if v == "auto" {
		o.MissAuto = true
		return setupCPUExperts(model.AutoShareStart, threads, o)
	}
	share, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return nil, cliutil.UsageError("--cpu-experts %q: want a share from 0 to 1, or auto", v)
	}
	return setupCPUExperts(share, threads, o)
}

func setupCPUExperts(share float64, threads int, o *model.Options) (backend.Backend, error) {
	if share == 0 {
		return nil, nil
	}
	if !(share > 0 && share <= 1) {
		return nil, cliutil.UsageError("--cpu-experts %v: want a share above 0 and at most 1 (or 0, off)", share)
	}
	if o.HostCache <= 0 {
		return nil, cliutil.UsageError("--cpu-experts: needs --host-cache (the CPU computes its share straight from the host tier's pinned copies)")
	}
	if _, ok := o.Backend.(backend.ExpertCache); !ok {
		return nil, cliutil.UsageError("--cpu-experts: the backend (%s) has no GPU tier whose misses the CPU could share; it needs --backend cuda", o.Backend.Name())
	}
	if len(o.Devices) > 0 {
		return nil, cliutil.UsageError("--cpu-experts: runs beside one GPU (got %d devices from --gpus)", len(o.Devices)+1)
	}
	// The CPU is a rank of its own: the model joins it to the GPU through
	// host memory (a nil collective), not with the one device's collective.
	if o.Collective != nil {
		if err := o.Collective.Close(); err != nil {
			return nil, err
		}
		o.Collective = nil
	}
	poll, err := cpuWait("FMOE_CPU_POLL")
	if err != nil {
		return nil, err
	}
	prime, err := cpuWait("FMOE_CPU_PRIME")
	if err != nil {
		return nil, err
	}
	futex, err := cpuWake()
	if err != nil {
		return nil, err
	}
	if o.MissTask, err = cpuShareTask(); err != nil {
		return nil, err
	}
	if o.MissAdmit, err = cpuAdmit(); err != nil {
		return nil, err
	}
	ratio, err := cpuTuneRatio()
	if err != nil {
		return nil, err
	}
	o.MissAffine = !ratio && o.MissAuto // a fixed share has nothing to fit
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	if poll > 0 || prime > 0 {
		// Each polling worker holds a P of the Go scheduler: the session's
		// goroutines (the GPU's host work, the readers) keep as many as
		// before, and the OS shares the cores.
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + threads - 1)
	}
	o.MissBackend, o.MissShare, o.MissPrime = cpu.New(cpu.Options{Threads: threads, Poll: poll, FutexWake: futex}), share, prime
	return o.MissBackend, nil
}

// cpuWait reads FMOE_CPU_POLL or FMOE_CPU_PRIME, experiments rather than
// flags: how long the CPU share's idle threads poll for their next op
// without yielding before they sleep (POLL, cpu.Options.Poll), or poll
// from the moment a layer asks for its routing (PRIME, model.Options.
// MissPrime); unset, 0. On dev-2c a share after 1 ms idle took 680-710 µs
// with 2 ms of polling against 860-1,010 without (docs/benchmarks.md,
// "After idle"); whether the GPU machine's share gains as much, beside
// the host work the pollers compete with, is for a device call to measure.
func cpuWait(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > time.Second {
		return 0, cliutil.UsageError("%s=%q: want a duration from 0 to 1s, such as 2ms", name, v)
	}
	return d, nil
}

// cpuWake reads FMOE_CPU_WAKE: unset or futex, the CPU share's idle
// threads sleep in a futex that wakes them all at once (cpu.Options.
// FutexWake, Linux) instead of one after another through Go's scheduler
// (~180 µs for 16 threads after an idle on the GPU machine, run 27);
// channel, the old way, kept to measure against. With the share as one
// task, run 30 found the futex 6% faster at K=4 and K=10 in every round.
func cpuWake() (bool, error) { return cliutil.EnvChoice("FMOE_CPU_WAKE", "futex", "channel") }

// cpuShareTask reads FMOE_CPU_SHARE: unset or task, each share goes to
// the CPU backend's threads as one task (model.Options.MissTask: no
// goroutine a share, SwiGLU folded into the gates' and ups' rows, no op
// between the phases); ops, the old way (three ops on a goroutine of the
// share's own), kept to measure against. Run 30 (H100) found the task
// 7-9% faster a token at K=4 and K=10 in three rounds each.
func cpuShareTask() (bool, error) { return cliutil.EnvChoice("FMOE_CPU_SHARE", "task", "ops") }

// cpuAdmit reads FMOE_CPU_ADMIT, an experiment: 1 also copies the experts
// the CPUs compute on a partly held layer up to the GPU tier in the
// background (model.Options.MissAdmit; it needs --prefetch), so that an
// evicted expert the CPUs took is not theirs at every later pick; unset
// or 0, not. Run 31 measured the share on the tiered K=10 layer without
// it, the GPU tier's hits down from 75.5% to 71.2%.
func cpuAdmit() (bool, error) {
	plain, err := cliutil.EnvChoice("FMOE_CPU_ADMIT", "0", "1")
	return !plain && err == nil, err
}

// prefetchPace reads FMOE_PF_PACE, an experiment: N (1 to 64) queues
// --prefetch's copies on the host, a layer's tail issuing N of them and
// the rest going one at a time as the link goes idle
// (model.Options.PrefetchPace), so that a layer's misses wait behind at
// most N prefetches; unset or 0, they go on the link as predicted.
func prefetchPace() (int, error) {
	v := os.Getenv("FMOE_PF_PACE")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 64 {
		return 0, cliutil.UsageError("FMOE_PF_PACE=%q: want 0 (off, the default) to 64 prefetches a layer issues at once", v)
	}
	return n, nil
}

// cpuTuneRatio reads FMOE_CPU_TUNE, an experiment: unset or ratio, the
// automatic share prices an expert at each side's time over its experts;
// affine splits a partly held layer's misses by fits of each side's time
// as a cost a layer plus one an expert (model.Options.MissAffine), which
// run 31's one or two experts a side on the tiered K=10 layer call for.
func cpuTuneRatio() (bool, error) { return cliutil.EnvChoice("FMOE_CPU_TUNE", "ratio", "affine") }
