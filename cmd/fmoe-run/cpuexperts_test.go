package main

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backends"
	"github.com/fmoe/fmoe/runtime/model"
)

// TestCPUExpertsOpens: --cpu-experts on options as openDevices leaves them
// for one GPU (its one-rank collective) opens a model whose greedy tokens
// are the same as without it, with experts computed on the CPU rank.
func TestCPUExpertsOpens(t *testing.T) {
	dir, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	greedy := func(share string) ([]int, model.ExpertStats) {
		bes, coll, err := backends.OpenDevices("cpu", nil, backends.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		be := tierCPU{Backend: bes[0]} // a GPU tier that keeps nothing: every expert misses
		defer be.Close()
		o := model.Options{Backend: be, Collective: coll, HostCache: 1 << 30, GPUCache: model.GPUCacheOff}
		mb, err := cpuExpertsFrom(share, 2, &o)
		if err != nil {
			t.Fatal(err)
		}
		if mb != nil {
			defer mb.Close()
		}
		m, err := model.Open(dir, o)
		if err != nil {
			t.Fatalf("share %s: %v", share, err)
		}
		defer m.Close()
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Generate([]int{1, 5, 9, 13}, 24, nil, nil, nil) // greedy
		if err != nil {
			t.Fatal(err)
		}
		return out, m.ExpertStats()
	}
	want, _ := greedy("0")
	for _, share := range []string{"0.5", "auto"} {
		got, st := greedy(share)
		if !slices.Equal(got, want) {
			t.Errorf("--cpu-experts %s: greedy %v, without %v", share, got, want)
		}
		if st.MissRank == 0 {
			t.Errorf("--cpu-experts %s: no expert computed on the CPU (%+v)", share, st)
		}
	}
	// The share's threads polling without yielding through the token
	// (FMOE_CPU_POLL) or from each layer's routing on (FMOE_CPU_PRIME): the
	// same tokens, and the Go scheduler given a P for each poller.
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	// The old ways the defaults replaced, kept to measure against.
	t.Setenv("FMOE_CPU_WAKE", "channel")
	if got, st := greedy("0.5"); !slices.Equal(got, want) || st.MissRank == 0 {
		t.Errorf("FMOE_CPU_WAKE=channel: greedy %v (%d experts on the CPU), without a share %v", got, st.MissRank, want)
	}
	t.Setenv("FMOE_CPU_WAKE", "")
	t.Setenv("FMOE_CPU_SHARE", "ops")
	if got, st := greedy("0.5"); !slices.Equal(got, want) || st.MissRank == 0 {
		t.Errorf("FMOE_CPU_SHARE=ops: greedy %v (%d experts on the CPU), without a share %v", got, st.MissRank, want)
	}
	t.Setenv("FMOE_CPU_SHARE", "")
	// The experiments off by default: the admitted share and the affine
	// split (an automatic share's only: a fixed one has nothing to fit).
	t.Setenv("FMOE_CPU_ADMIT", "1")
	t.Setenv("FMOE_CPU_TUNE", "affine")
	for share, affine := range map[string]bool{"0.5": false, "auto": true} {
		o := model.Options{Backend: tierCPU{}, HostCache: 1}
		mb, err := cpuExpertsFrom(share, 2, &o)
		if mb != nil {
			mb.Close()
		}
		if err != nil || !o.MissAdmit || o.MissAffine != affine {
			t.Errorf("--cpu-experts %s with FMOE_CPU_ADMIT=1 FMOE_CPU_TUNE=affine: admit %v, affine %v (%v); want true, %v", share, o.MissAdmit, o.MissAffine, err, affine)
		}
	}
	if got, st := greedy("auto"); !slices.Equal(got, want) || st.MissRank == 0 {
		t.Errorf("FMOE_CPU_ADMIT=1 FMOE_CPU_TUNE=affine: greedy %v (%d experts on the CPU), without a share %v", got, st.MissRank, want)
	}
	t.Setenv("FMOE_CPU_ADMIT", "")
	t.Setenv("FMOE_CPU_TUNE", "")
	for _, env := range []string{"FMOE_CPU_POLL", "FMOE_CPU_PRIME"} {
		runtime.GOMAXPROCS(procs)
		t.Setenv("FMOE_CPU_POLL", "")
		t.Setenv("FMOE_CPU_PRIME", "")
		t.Setenv(env, "1ms")
		got, st := greedy("0.5")
		if !slices.Equal(got, want) || st.MissRank == 0 {
			t.Errorf("%s=1ms: greedy %v (%d experts on the CPU), without a share %v", env, got, st.MissRank, want)
		}
		if n := runtime.GOMAXPROCS(0); n != procs+1 {
			t.Errorf("%s with 2 threads: GOMAXPROCS %d, want %d (one more for the one polling worker)", env, n, procs+1)
		}
	}
}

// TestCPUWakeRefused: FMOE_CPU_WAKE and FMOE_CPU_SHARE are on (futex,
// task) unset or named, off only when set to the old way (channel, ops),
// and any other value is a usage error naming the variable.
func TestCPUWakeRefused(t *testing.T) {
	for _, c := range []struct {
		name, on, off string
		read          func() (bool, error)
	}{{"FMOE_CPU_WAKE", "futex", "channel", cpuWake}, {"FMOE_CPU_SHARE", "task", "ops", cpuShareTask},
		{"FMOE_CPU_TUNE", "ratio", "affine", cpuTuneRatio},
		// Off by default: "on" here is its 0.
		{"FMOE_CPU_ADMIT", "0", "1", func() (bool, error) { v, err := cpuAdmit(); return !v, err }}} {
		t.Setenv(c.name, "fast")
		if _, err := c.read(); err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s=fast: error %v, want one naming it", c.name, err)
		}
		for v, want := range map[string]bool{"": true, c.on: true, c.off: false} {
			t.Setenv(c.name, v)
			if on, err := c.read(); on != want || err != nil {
				t.Errorf("%s=%q: %v, %v; want %v", c.name, v, on, err, want)
			}
		}
	}
}

// TestCPUWaitRefused: a bad FMOE_CPU_POLL or FMOE_CPU_PRIME is a usage
// error naming it.
func TestCPUWaitRefused(t *testing.T) {
	for _, name := range []string{"FMOE_CPU_POLL", "FMOE_CPU_PRIME"} {
		for _, v := range []string{"fast", "-1ms", "2s"} {
			t.Setenv(name, v)
			if _, err := cpuWait(name); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: error %v, want one naming it", name, v, err)
			}
		}
		t.Setenv(name, "2ms")
		if d, err := cpuWait(name); err != nil || d != 2*time.Millisecond {
			t.Errorf("%s=2ms: %v, %v", name, d, err)
		}
	}
}

// TestPrefetchPaceEnv: FMOE_PF_PACE is off unset and at 0, N at 1 to
// 64, and any other value an error that names it.
func TestPrefetchPaceEnv(t *testing.T) {
	for v, want := range map[string]int{"": 0, "0": 0, "1": 1, "3": 3, "64": 64} {
		t.Setenv("FMOE_PF_PACE", v)
		if got, err := prefetchPace(); err != nil || got != want {
			t.Errorf("FMOE_PF_PACE=%q: %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"yes", "-1", "65", "1.5"} {
		t.Setenv("FMOE_PF_PACE", v)
		if _, err := prefetchPace(); err == nil || !strings.Contains(err.Error(), "FMOE_PF_PACE") {
			t.Errorf("FMOE_PF_PACE=%s: %v, want an error naming it", v, err)
		}
	}
}
