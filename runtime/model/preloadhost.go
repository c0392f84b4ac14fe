package model

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// With exclusive tiers (demote.go) Preload goes on after the GPU tier:
// the experts it left out go into the host tier, as many as that holds,
// shared evenly over the layers, the most loaded first. Otherwise the
// first use of each of them is a read from the files (run 7: at K=4 nearly
// every GPU-tier miss of a 400-token run was such a first read, which the
// host tier's read-backs never see).

// preloadHost reads into the host tier the experts of each layer not in
// plan (most loaded first), calling each after each; it returns how many
// the tier holds. A read or checksum that fails leaves its expert out, to
// be read, and refused, on use.
func (m *Model) preloadHost(ctx context.Context, plan [][]int, load [][]int64, each func()) int {
	rest := m.hostPlan(plan, load)
	r := m.experts
	jobs := make(chan [2]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range demoters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				r.readBack(k[0], k[1])
				mu.Lock()
				each()
				mu.Unlock()
			}
		}()
	}
feed:
	for l, ids := range rest {
		for _, id := range ids {
			select {
			case jobs <- [2]int{l, id}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	held := 0
	for l, ids := range rest {
		for _, id := range ids {
			if r.tier.holds(l, id) {
				held++
			}
		}
	}
	return held
}

// hostPlan lists, per layer, the experts not in plan that the host tier
// takes: its slots shared evenly over the layers, the most loaded first.
func (m *Model) hostPlan(plan [][]int, load [][]int64) [][]int {
	L := len(m.layers)
	left := make([][]int, L)
	want := make([]int, L)
	for l := range L {
		for id := range m.Config.LayerExperts(l) {
			if !slices.Contains(plan[l], id) {
				left[l] = append(left[l], id)
			}
		}
		if load != nil {
			slices.SortStableFunc(left[l], func(a, b int) int { return cmp.Compare(load[l][b], load[l][a]) })
		}
		want[l] = len(left[l])
	}
	for l, n := range share(len(m.experts.tier.slots), want) {
		left[l] = left[l][:n]
	}
	return left
}
