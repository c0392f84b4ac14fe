package model

import "testing"

// TestHostTier: a miss takes a free slot, then the least recent one not in
// use; a hit returns the same bytes; a failed read gives its slot back;
// when every slot is in use get says so.
func TestHostTier(t *testing.T) {
	const stride = 4096
	tr, err := newHostTier(3*stride, stride, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill := func(l, id int) {
		t.Helper()
		e, buf, hit := tr.get(l, id)
		if e == nil || hit {
			t.Fatalf("get(%d, %d): entry %v, hit %v; want a miss with a slot", l, id, e, hit)
		}
		buf[0] = byte(10*l + id)
		tr.put(e, true)
	}
	fill(0, 1)
	fill(0, 2)
	fill(1, 1)
	e, buf, hit := tr.get(0, 1) // 0/1 becomes the most recent
	if !hit || buf[0] != 1 {
		t.Fatalf("hit on 0/1: %v, byte %d", hit, buf[0])
	}
	tr.put(e, true)
	fill(1, 2) // evicts 0/2, the least recent
	if _, ok := tr.m[[2]int{0, 2}]; ok {
		t.Fatal("0/2 not evicted")
	}
	// Hold every slot; a fourth expert gets none.
	var held []*hentry
	for _, k := range [][2]int{{0, 1}, {1, 1}, {1, 2}} {
		e, _, hit := tr.get(k[0], k[1])
		if !hit {
			t.Fatalf("%v not held", k)
		}
		held = append(held, e)
	}
	if e, _, _ := tr.get(2, 0); e != nil {
		t.Fatal("a slot in use was evicted")
	}
	for _, e := range held {
		tr.put(e, true)
	}
	// A failed read leaves no entry behind and its slot free.
	e, _, _ = tr.get(3, 3)
	tr.put(e, false)
	if _, ok := tr.m[[2]int{3, 3}]; ok || len(tr.free) != 1 {
		t.Fatalf("failed read: entry kept %v, %d free slots", ok, len(tr.free))
	}
	if err := tr.close(); err != nil {
		t.Fatal(err)
	}
	if err := checkHostCache(1 << 62); err == nil {
		t.Fatal("a 4 EiB host tier was accepted")
	}
}

// TestHostTierBudgetCut: a host tier asked for more than the model's
// experts gets slots for those and the spare ones (2 × the read parallelism,
// by default 2K) and says so in CacheBudgets, which --timing prints; a
// smaller one keeps its budget.
func TestHostTierBudgetCut(t *testing.T) {
	c := cases[0]
	m0 := open(t, c.src, c.bits, c.k, Options{})
	set := m0.experts.set
	blocks := 0 // from the files' sizes, not the checksums hostTierBudget counts
	for _, l := range set.Layers {
		blocks += int(l.Size / set.Stride)
	}
	if blocks == 0 {
		t.Fatal("the test model has no expert blocks")
	}
	full := int64(blocks+2*m0.K) * set.Stride
	for _, v := range []struct {
		ask, want int64
	}{
		{full + 5*set.Stride + 7, full}, // cut to the model's experts and the spare slots
		{full, full},
		{3*set.Stride + 1, 3*set.Stride + 1}, // below them: kept as asked
	} {
		m := open(t, c.src, c.bits, c.k, Options{HostCache: v.ask})
		if _, host := m.CacheBudgets(); host != v.want {
			t.Errorf("host tier of %d bytes asked: CacheBudgets says %d, want %d", v.ask, host, v.want)
		}
		if got, want := len(m.experts.tier.slots), int(v.want/set.Stride); got != want {
			t.Errorf("host tier of %d bytes asked: %d slots, want %d", v.ask, got, want)
		}
	}
}
