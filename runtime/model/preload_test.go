package model

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// TestPreloadGolden: after Preload every expert a golden run uses comes
// from the GPU tier (no bind during the run) and the logits are bit for
// bit those of a run that filled the tier as it went; Preload counts and
// reports every expert, its progress ends at the total. With
// FMOE_TEST_BACKEND=cuda the same runs on the GPU's own tier ("device").
func TestPreloadGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, c.golden)
			ref, _ := goldenRun(t, open(t, c.src, c.bits, c.k, Options{Backend: newKeepTier(testBackend(t))}), g)
			for _, v := range []string{"keepTier", "device"} {
				keep := newKeepTier(testBackend(t))
				var be backend.Backend = keep
				if v == "device" {
					tb := testBackend(t)
					if _, ok := tb.(backend.ExpertCache); !ok {
						continue // the CPU has no tier of its own
					}
					be, keep = tb, nil
				}
				m := open(t, c.src, c.bits, c.k, Options{Backend: be})
				var calls, last int
				st, err := m.Preload(context.Background(), PreloadOptions{Progress: func(done, total int) {
					calls++
					if done != last+1 || total != m.Config.NumHiddenLayers*m.Config.NumExperts {
						t.Errorf("%s: progress (%d, %d) after %d", v, done, total, last)
					}
					last = done
				}})
				all := m.Config.NumHiddenLayers * m.Config.NumExperts
				if err != nil || st.Experts != all || st.Total != all || calls != all || st.Bytes <= 0 || st.Bytes > int64(all)*(m.experts.set.Stride+9*256) {
					t.Fatalf("%s: Preload %+v, %v after %d progress calls; want all %d experts", v, st, err, calls, all)
				}
				binds := 0
				if keep != nil {
					binds = sumBinds(keep)
				}
				got, _ := goldenRun(t, m, g)
				if i := firstDiff(got, ref); i >= 0 {
					t.Fatalf("%s: logit %d is %v, without Preload %v", v, i, got[i], ref[i])
				}
				if es := m.ExpertStats(); es.Uses == 0 || es.GPUHits != es.Uses || es.DeviceBytes != 0 {
					t.Errorf("%s: after Preload %d of %d experts from the tier, %d bytes copied; want all, none", v, es.GPUHits, es.Uses, es.DeviceBytes)
				}
				if keep != nil && sumBinds(keep) != binds {
					t.Errorf("%s: %d binds during the run after Preload", v, sumBinds(keep)-binds)
				}
			}
		})
	}
}

func sumBinds(k *keepTier) (n int) {
	for _, b := range k.binds {
		n += b
	}
	return n
}

// budgetTier is keepTier with a byte budget that charges an expert as the
// CUDA tier does (each part in a slot of whole 256 bytes), reckoned from
// the weights it is given, and evicts the least recently used entry to
// make room, counting evictions.
type budgetTier struct {
	*keepTier
	budget, used int64
	size         map[[2]int]int64
	order        [][2]int // least recently used first
	evicted      int
}

func newBudgetTier() *budgetTier {
	return &budgetTier{keepTier: newKeepTier(cpu.New(cpu.Options{})), size: map[[2]int]int64{}}
}

func (b *budgetTier) SetExpertCache(n int64, _ int) error {
	b.budget, b.used, b.order = n, 0, nil
	clear(b.size)
	return b.keepTier.SetExpertCache(n, 0)
}

func (b *budgetTier) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	b.forget([2]int{l, id})
	if _, ok := b.held[[2]int{l, id}]; ok {
		b.order = append(b.order, [2]int{l, id})
	}
	return b.keepTier.CachedExpert(l, id)
}

// forget takes k out of the use order.
func (b *budgetTier) forget(k [2]int) {
	if i := slices.Index(b.order, k); i >= 0 {
		b.order = slices.Delete(b.order, i, i+1)
	}
}

func (b *budgetTier) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	k := [2]int{l, id}
	if _, ok := b.held[k]; ok {
		return b.bindAll(ws) // as the CUDA tier: bound uncached
	}
	var size int64
	for _, w := range ws {
		for _, p := range [][]byte{w.Data, w.Scales, w.Biases} {
			size += int64(len(p)+255) &^ 255
		}
	}
	if size > b.budget {
		return b.bindAll(ws)
	}
	for b.used+size > b.budget {
		v := b.order[0]
		b.forget(v)
		delete(b.held, v)
		b.used -= b.size[v]
		delete(b.size, v)
		b.evicted++
	}
	b.used += size
	b.size[k] = size
	b.order = append(b.order, k)
	return b.keepTier.BindExpert(l, id, ws)
}

func (b *budgetTier) DropExpert(l, id int) error {
	k := [2]int{l, id}
	b.forget(k)
	b.used -= b.size[k]
	delete(b.size, k)
	return b.keepTier.DropExpert(l, id)
}

// heldIn lists the ids of layer l a keepTier holds, ascending.
func heldIn(k *keepTier, l int) []int {
	var ids []int
	for key := range k.held {
		if key[0] == l {
			ids = append(ids, key[1])
		}
	}
	slices.Sort(ids)
	return ids
}

// TestPreloadBudget: a tier with room for 43 of the 8×16 experts (and
// most of a 44th) gets exactly 43, six in each of the first three layers
// and five in the others, evicting none; without a load table the lowest
// ids, with one the most picked of each layer. The run after it still
// computes what a run without Preload does.
func TestPreloadBudget(t *testing.T) {
	dir := packed(t, "mlx-4bit", 0)
	ids := []int{1, 5, 9, 13, 2, 7}
	want := forwardAll(t, open(t, "mlx-4bit", 0, 0, Options{Backend: cpu.New(cpu.Options{})}), ids)
	probe := newBudgetTier()
	m, err := Open(dir, Options{Backend: probe})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
		t.Fatal(err)
	}
	entry := probe.used / int64(len(probe.held)) // the fake's own charge
	m.Close()
	L, E := m.Config.NumHiddenLayers, m.Config.NumExperts
	load := make([][]int64, L)
	for l := range load {
		load[l] = make([]int64, E)
		for e := range load[l] {
			load[l][e] = int64((e*7 + l) % E) // a permutation per layer, no ties
		}
	}
	for _, o := range []PreloadOptions{{}, {Load: load}} {
		bt := newBudgetTier()
		m, err := Open(dir, Options{Backend: bt, GPUCache: 43*entry + entry - 1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		st, err := m.Preload(context.Background(), o)
		if err != nil || st.Experts != 43 || st.Total != L*E || st.Bytes > m.CacheBudget() {
			t.Fatalf("load %v: Preload %+v, %v; want 43 of %d experts within %d bytes", o.Load != nil, st, err, L*E, m.CacheBudget())
		}
		if bt.evicted != 0 || len(bt.held) != 43 {
			t.Fatalf("load %v: %d evictions, %d held; want none, 43", o.Load != nil, bt.evicted, len(bt.held))
		}
		for l := range L {
			n := 5
			if l < 3 {
				n = 6
			}
			var wantIDs []int
			for e := range E {
				if o.Load == nil && e < n || o.Load != nil && load[l][e] >= int64(E-n) {
					wantIDs = append(wantIDs, e)
				}
			}
			if got := heldIn(bt.keepTier, l); !slices.Equal(got, wantIDs) {
				t.Errorf("load %v: layer %d holds %v, want %v", o.Load != nil, l, got, wantIDs)
			}
		}
		if got := forwardAll(t, m, ids); !slices.Equal(got, want) {
			t.Errorf("load %v: the logits after a partial Preload differ", o.Load != nil)
		}
		if _, err := m.Preload(context.Background(), PreloadOptions{Load: load[:2]}); err == nil || !strings.Contains(err.Error(), "2 layers") {
			t.Errorf("a load table of 2 layers: %v", err)
		}
	}
}

// TestPreloadSplit: over two devices each tier gets the experts its
// device computes, and none of the other's.
func TestPreloadSplit(t *testing.T) {
	a, b := newKeepTier(nil), newKeepTier(nil)
	m := open(t, "mlx-4bit", 0, 0, Options{Backend: a, Devices: []backend.Backend{b}})
	st, err := m.Preload(context.Background(), PreloadOptions{})
	L, E := m.Config.NumHiddenLayers, m.Config.NumExperts
	if err != nil || st.Experts != L*E || len(a.held)+len(b.held) != L*E {
		t.Fatalf("Preload %+v, %v; tiers hold %d + %d, want %d in all", st, err, len(a.held), len(b.held), L*E)
	}
	for l := range L {
		for _, id := range heldIn(a, l) {
			if m.owner(l)[id] != 0 {
				t.Errorf("rank 0's tier holds layer %d expert %d of rank %d", l, id, m.owner(l)[id])
			}
		}
		for _, id := range heldIn(b, l) {
			if m.owner(l)[id] != 1 {
				t.Errorf("rank 1's tier holds layer %d expert %d of rank %d", l, id, m.owner(l)[id])
			}
		}
	}
}

// TestPreloadDamagedExpert: one damaged block in layer 2 fails Preload
// naming its layer, expert and fmoe-verify, whether checked beside or
// before the bind; the tier then holds layers 0 and 1 whole and nothing
// of layer 2 or after.
func TestPreloadDamagedExpert(t *testing.T) {
	for _, before := range []bool{false, true} {
		dir, man := damagedCopy(t)
		set := &man.Experts[0]
		xorByte(t, filepath.Join(dir, set.Dir, set.Layers[2].File), 5*set.Stride+123)
		keep := newKeepTier(nil)
		m, err := Open(dir, Options{Backend: keep, VerifyBeforeCompute: before})
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Preload(context.Background(), PreloadOptions{})
		wantAll(t, err, "model: layer 2 expert 5 ", "checksum mismatch", "fmoe-verify --model "+dir)
		E := man.Config.NumExperts
		for l := range man.Config.NumHiddenLayers {
			n := len(heldIn(keep, l))
			if (l < 2 && n != E) || (l >= 2 && n != 0) {
				t.Errorf("before=%v: layer %d: %d experts held after the failure", before, l, n)
			}
		}
		if len(m.experts.pending) != 0 {
			t.Errorf("before=%v: checks pending after Preload", before)
		}
		m.Close()
	}
}

// TestPreloadCancel: a cancel part-way through layer 1 stops Preload with
// ctx's error, layer 0 kept whole and nothing of layer 1 left.
func TestPreloadCancel(t *testing.T) {
	keep := newKeepTier(nil)
	m := open(t, "mlx-4bit", 0, 0, Options{Backend: keep})
	E := m.Config.NumExperts
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := m.Preload(ctx, PreloadOptions{Progress: func(done, _ int) {
		if done == E+3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Preload cancelled: %v", err)
	}
	if n0, n1 := len(heldIn(keep, 0)), len(heldIn(keep, 1)); n0 != E || n1 != 0 {
		t.Errorf("after the cancel layer 0 holds %d, layer 1 %d; want %d, 0", n0, n1, E)
	}
}

// TestPreloadNoTier: a model without a GPU tier (the CPU; a tier turned
// off) has nothing to preload into, and says so.
func TestPreloadNoTier(t *testing.T) {
	for _, o := range []Options{{Backend: cpu.New(cpu.Options{})}, {Backend: newKeepTier(nil), GPUCache: GPUCacheOff}} {
		m := open(t, "mlx-4bit", 0, 0, o)
		if _, err := m.Preload(context.Background(), PreloadOptions{}); err == nil || !strings.Contains(err.Error(), "no GPU tier") {
			t.Errorf("Preload without a tier: %v", err)
		}
	}
}

// TestShare: the places go evenly, a layer that wants less leaves the
// rest to the others, and the remainder to the first layers.
func TestShare(t *testing.T) {
	for _, c := range []struct {
		n          int
		want, same []int
	}{
		{43, []int{16, 16, 16, 16, 16, 16, 16, 16}, []int{6, 6, 6, 5, 5, 5, 5, 5}},
		{10, []int{1, 8, 8}, []int{1, 5, 4}},
		{100, []int{3, 0, 4}, []int{3, 0, 4}},
		{2, []int{5, 5, 5}, []int{1, 1, 0}},
		{0, []int{5}, []int{0}},
	} {
		if got := share(c.n, c.want); !slices.Equal(got, c.same) {
			t.Errorf("share(%d, %v) = %v, want %v", c.n, c.want, got, c.same)
		}
	}
}
