package main

import (
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backends"
	"github.com/fmoe/fmoe/runtime/model"
)

// noTier stands in for a GPU backend: a CPU backend with a GPU tier that
// keeps nothing, so that every expert is a miss.
type noTier struct{ backend.Backend }

func (noTier) SetExpertCache(int64, int) error                { return nil }
func (noTier) DeviceMemory() (int64, int64, error)            { return 64 << 30, 80 << 30, nil }
func (noTier) CachedExpert(int, int) ([]backend.Tensor, bool) { return nil, false }
func (noTier) DropExpert(int, int) error                      { return nil }
func (n noTier) BindExpert(_, _ int, ws []backend.Weight) ([]backend.Tensor, error) {
	var ts []backend.Tensor
	for _, w := range ws {
		t, err := n.Bind(w)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// TestCPUExpertsOpens: --cpu-experts on options as openDevices leaves them
// for one GPU (its one-rank collective) opens a model whose greedy tokens
// are the same as without it, with experts computed on the CPU rank.
func TestCPUExpertsOpens(t *testing.T) {
	dir, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	greedy := func(share float64) ([]int, model.ExpertStats) {
		bes, coll, err := backends.OpenDevices("cpu", nil, backends.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		be := noTier{bes[0]}
		defer be.Close()
		o := model.Options{Backend: be, Collective: coll, HostCache: 1 << 30, GPUCache: model.GPUCacheOff}
		mb, err := setupCPUExperts(share, 2, &o)
		if err != nil {
			t.Fatal(err)
		}
		if mb != nil {
			defer mb.Close()
		}
		m, err := model.Open(dir, o)
		if err != nil {
			t.Fatalf("share %v: %v", share, err)
		}
		defer m.Close()
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		ids := []int{1, 5, 9, 13}
		var out []int
		for range 3 * 8 {
			lg, err := s.Forward(ids)
			if err != nil {
				t.Fatal(err)
			}
			next := 0
			for i, v := range lg {
				if v > lg[next] {
					next = i
				}
			}
			out, ids = append(out, next), []int{next}
		}
		return out, m.ExpertStats()
	}
	want, _ := greedy(0)
	got, st := greedy(0.5)
	if !slices.Equal(got, want) {
		t.Errorf("--cpu-experts 0.5: greedy %v, without %v", got, want)
	}
	if st.MissRank == 0 {
		t.Errorf("--cpu-experts 0.5: no expert computed on the CPU (%+v)", st)
	}
}
