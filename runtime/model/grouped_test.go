package model

import "testing"

// TestGroupedExperts: with a batched matmul (keepTier's, CUDA's own under
// FMOE_TEST_BACKEND=cuda) a cold run computes each prompt expert in
// batches of one job and a warm run the layer's cached experts in batches
// of many, and both give the logits of a run without the tier bit for bit:
// on the CPU through the same MatMuls staged differently (groupExperts'
// rows in eo, its slots), on CUDA through the grouped kernel, whose jobs
// compute the same bits alone or together.
func TestGroupedExperts(t *testing.T) {
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, c.golden)
			ref, _ := goldenRun(t, open(t, c.src, c.bits, c.k, Options{GPUCache: GPUCacheOff}), g)
			// A tier of every expert, then of the even ones: the warm run's
			// hits then sit between misses, their rows apart from their slots.
			for _, odd := range []bool{false, true} {
				keep := newKeepTier(testBackend(t))
				if odd {
					keep.skip = func(id int) bool { return id%2 == 1 }
				}
				m := open(t, c.src, c.bits, c.k, Options{Backend: keep})
				for run := 1; run <= 2; run++ {
					keep.batches, keep.jobs, keep.most = 0, 0, 0
					got, _ := goldenRun(t, m, g)
					if i := firstDiff(got, ref); i >= 0 {
						t.Fatalf("odd experts uncached %v, run %d: logit %d is %v, without the tier %v", odd, run, i, got[i], ref[i])
					}
					t.Logf("odd experts uncached %v, run %d: %d batches, %d jobs, the largest %d", odd, run, keep.batches, keep.jobs, keep.most)
					switch {
					case keep.batches == 0:
						t.Fatalf("run %d: the prompt's experts took no batched matmul", run)
					case run == 1 && keep.most != 2:
						t.Errorf("cold run: a batch of %d jobs, want misses one at a time (gate and up)", keep.most)
					case run == 2 && keep.most < 2:
						t.Errorf("warm run: no batch of several cached experts")
					}
				}
			}
		})
	}
}
