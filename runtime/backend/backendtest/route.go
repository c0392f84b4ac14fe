package backendtest

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// RouteCase is one RouteTopK input: T rows of E logits and the K to pick.
type RouteCase struct {
	Name    string
	T, E, K int
	Logits  []float32
}

// RouteCases are the adversarial inputs of DeviceRouter: ties (within the
// top K and across its boundary, a row of equal logits), −Inf logits (also
// inside the top K, and a row of them), a NaN in one row of three, K = 1,
// K = E, widths that are not multiples of 32, and rows that differ.
// They are exported for kernels tested outside a backend (an emulator).
func RouteCases() []RouteCase {
	rng := newRNG("RouteTopK")
	normal := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(scale * rng.NormFloat64())
		}
		return v
	}
	rows := func(rs ...[]float32) []float32 {
		var v []float32
		for _, r := range rs {
			v = append(v, r...)
		}
		return v
	}
	// coarse rounds to halves: many equal logits.
	coarse := func(n int) []float32 {
		v := normal(n, 2)
		for i := range v {
			v[i] = float32(math.Round(float64(v[i])*2) / 2)
		}
		return v
	}
	equal := func(n int, x float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = x
		}
		return v
	}
	// boundary: 7 clear leaders, then 5 equal logits straddling the 10th place.
	boundary := normal(257, 1)
	for i, e := range []int{250, 3, 40, 128, 7, 200, 33} {
		boundary[e] = float32(10 + i)
	}
	for _, e := range []int{256, 5, 100, 17, 64} {
		boundary[e] = 5
	}
	inf := float32(math.Inf(-1))
	// few: 3 finite logits among −Inf, so the top 8 take −Inf ones (ties to the lower index).
	few := equal(60, inf)
	few[41], few[9], few[50] = 1, 2, -3
	half := normal(60, 1)
	for i := 0; i < len(half); i += 2 {
		half[i] = inf
	}
	nan := normal(257, 1)
	nan[200] = float32(math.NaN())
	// wide: more experts than a CUDA lane keeps in registers (512), the
	// leaders and a tie past that; wideNaN: the NaN past it too.
	wide := coarse(700)
	for i, e := range []int{690, 513, 3, 600} {
		wide[e] = float32(20 - i)
	}
	wide[650], wide[520] = 15, 15
	wideNaN := normal(700, 1)
	wideNaN[699] = float32(math.NaN())
	return []RouteCase{
		{"E60K4ties", 3, 60, 4, rows(normal(60, 3), coarse(60), equal(60, 0.25))},
		{"E257K10boundary", 2, 257, 10, rows(boundary, coarse(257))},
		{"E512K32", 2, 512, 32, rows(normal(512, 4), coarse(512))},
		{"E512K10", 1, 512, 10, normal(512, 1)},
		{"E512K1", 2, 512, 1, rows(normal(512, 1), equal(512, -1))},
		{"E60K60", 2, 60, 60, rows(normal(60, 2), coarse(60))},
		{"E128K8wide", 1, 128, 8, normal(128, 30)},
		{"NegInf", 3, 60, 8, rows(few, half, equal(60, inf))},
		{"NaN", 3, 257, 4, rows(normal(257, 1), nan, coarse(257))},
		{"E700K6wide", 2, 700, 6, rows(wide, wideNaN)},
		{"E700K40", 1, 700, 40, wide},
	}
}

// wantRoute is the contract's reference for one row: the K largest logits,
// chosen by decreasing value and then increasing index (a stable sort,
// which is what backend.TopK's strict '>' gives), written in ascending id,
// and their softmax weights in float64, over the K (renorm) or over all E.
// nan: the row holds a NaN (ids 0..K-1, status 1).
func wantRoute(row []float32, K int, renorm bool) (ids []int, w []float64, nan bool) {
	order := make([]int, len(row))
	for i := range order {
		order[i] = i
		if math.IsNaN(float64(row[i])) {
			nan = true
		}
	}
	if nan {
		return order[:K], nil, true
	}
	sort.SliceStable(order, func(a, b int) bool { return row[order[a]] > row[order[b]] })
	ids = order[:K]
	m := float64(row[ids[0]])
	var sum float64
	over := ids
	if !renorm {
		over = order
	}
	for _, e := range over {
		sum += math.Exp(float64(row[e]) - m)
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	for _, e := range ids {
		w = append(w, math.Exp(float64(row[e])-m)/sum)
	}
	return ids, w, false
}

// ulps is how many float32 ulps (at want) got is from want.
func ulps(got float32, want float64) float64 {
	a := float32(math.Abs(want))
	u := float64(math.Nextafter32(a, float32(math.Inf(1))) - a)
	return math.Abs(float64(got)-want) / u
}

// testRouteTopK checks DeviceRouter.RouteTopK (skipped by backends that
// route on the host): ids exact, weights within 2 ulps of float64, NaN rows
// reported in status with ids 0..K-1.
func testRouteTopK(t *testing.T, be backend.Backend) {
	dr, ok := be.(backend.DeviceRouter)
	if !ok {
		t.Skip("the backend does not route on the device")
	}
	for _, c := range RouteCases() {
		for _, renorm := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/renorm=%v", c.Name, renorm), func(t *testing.T) {
				checkRoute(t, be, dr, c, renorm)
			})
		}
	}
	lg, ids, w, st := alloc(t, be, 60), alloc(t, be, 4), alloc(t, be, 4), alloc(t, be, 1)
	for _, bad := range [][3]int{{1, 60, 0}, {1, 60, 61}, {2, 60, 4}, {1, 60, 5}} {
		if err := dr.RouteTopK(ids, w, st, lg, bad[0], bad[1], bad[2], true); err == nil {
			t.Errorf("RouteTopK of T=%d, E=%d, K=%d into 4 ids from 60 logits: no error", bad[0], bad[1], bad[2])
		}
	}
}

func checkRoute(t *testing.T, be backend.Backend, dr backend.DeviceRouter, c RouteCase, renorm bool) {
	lg := put(t, be, c.Logits)
	ids, w, st := alloc(t, be, c.T*c.K), alloc(t, be, c.T*c.K), alloc(t, be, 1)
	must(t, dr.RouteTopK(ids, w, st, lg, c.T, c.E, c.K, renorm))
	CheckRoute(t, c, renorm, get(t, be, ids), get(t, be, w), get(t, be, st)[0])
}

// CheckRoute checks RouteTopK's outputs for c (status as the caller
// zeroed it): ids exact, weights within 2 float32 ulps of float64, a row
// with a NaN reported with status 1 and ids 0..K-1.
func CheckRoute(t *testing.T, c RouteCase, renorm bool, gotIDs, gotW []float32, status float32) {
	t.Helper()
	var wantStatus float32
	for r := 0; r < c.T; r++ {
		wid, ww, nan := wantRoute(c.Logits[r*c.E:(r+1)*c.E], c.K, renorm)
		if nan {
			wantStatus = 1
		}
		for j := 0; j < c.K; j++ {
			gi, gw := gotIDs[r*c.K+j], gotW[r*c.K+j]
			if gi != float32(wid[j]) {
				t.Fatalf("row %d: id %d is %v, want %d (ids %v)", r, j, gi, wid[j], gotIDs[r*c.K:(r+1)*c.K])
			}
			if nan {
				continue
			}
			if math.IsNaN(ww[j]) != math.IsNaN(float64(gw)) || !math.IsNaN(ww[j]) && ulps(gw, ww[j]) > 2 {
				t.Fatalf("row %d: weight %d (expert %d) is %v, want %v (%.1f ulps)", r, j, wid[j], gw, ww[j], ulps(gw, ww[j]))
			}
		}
	}
	if status != wantStatus {
		t.Fatalf("status %v, want %v", status, wantStatus)
	}
}
