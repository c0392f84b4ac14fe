package backendtest

import (
	"math"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// testArgMax checks backend.ArgMaxer where a backend has it: the first
// index of the largest value against a running maximum on the host, on
// lengths around a GPU block's threads and a vocabulary's, with the
// maximum tied at two places (the first must win, whichever thread or lane
// saw it), at the first and the last index, every value equal, and the
// finiteness flag for a NaN, +Inf and -Inf anywhere; bad buffers refused.
func testArgMax(t *testing.T, be backend.Backend) {
	am, ok := be.(backend.ArgMaxer)
	if !ok {
		t.Skip("the backend does not pick the greedy token where the logits are")
	}
	rng := newRNG("argmax")
	dst := alloc(t, be, 2)
	run := func(name string, x []float32) (idx int, bad bool) {
		t.Helper()
		xb := put(t, be, x)
		defer be.Free(xb)
		must(t, am.ArgMax(dst, xb))
		d := get(t, be, dst)
		if d[1] != 0 && d[1] != 1 {
			t.Fatalf("%s: finiteness flag %v, want 0 or 1", name, d[1])
		}
		return int(d[0]), d[1] == 1
	}
	for _, n := range []int{1, 2, 31, 33, 1000, 1024, 1025, 4097, 248320} {
		x := randVec(rng, n, 3)
		cases := map[string][]float32{"random": x}
		if n > 2 {
			tied := append([]float32(nil), x...)
			m := tied[0]
			for _, v := range tied {
				m = max(m, v)
			}
			tied[n/3], tied[n-1] = m+1, m+1 // two maxima: n/3 wins
			cases["tied"] = tied
			first := append([]float32(nil), x...)
			first[0] = m + 1
			cases["first"] = first
			last := append([]float32(nil), x...)
			last[n-1] = m + 1
			cases["last"] = last
		}
		cases["equal"] = make([]float32, n)
		for name, v := range cases {
			want := 0
			for i, f := range v {
				if f > v[want] {
					want = i
				}
			}
			if got, bad := run(name, v); bad || got != want {
				t.Errorf("n=%d %s: argmax %d (non-finite %v), want %d (finite)", n, name, got, bad, want)
			}
		}
		for _, f := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for _, at := range []int{0, n / 2, n - 1} {
				v := append([]float32(nil), x...)
				v[at] = f
				if _, bad := run("non-finite", v); !bad {
					t.Errorf("n=%d: %v at %d not flagged", n, f, at)
				}
			}
		}
	}
	one, x := alloc(t, be, 1), put(t, be, []float32{1, 2, 3})
	if err := am.ArgMax(one, x); err == nil || !strings.Contains(err.Error(), "argmax") {
		t.Errorf("argmax into one value: error %v, want one naming argmax", err)
	}
}
