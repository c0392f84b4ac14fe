package routetrace

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRecorder: recorded choices land at their (position, layer), a
// re-recorded position keeps the later choice, a layer never recorded (a
// dense one) reads ids 0…K−1 at weight 0, and the result saves and loads
// as a valid trace.
func TestRecorder(t *testing.T) {
	r, err := NewRecorder(3, 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	for pos := 0; pos < 4; pos++ {
		for l := 1; l < 3; l++ { // layer 0 is dense
			r.Record(l, pos, []int{pos + l, 7}, []float32{0.75, 0.25})
		}
	}
	r.Record(2, 1, []int{3, 4}, []float32{0.5, 0.5}) // rewound and routed again
	tr, err := r.Trace()
	if err != nil {
		t.Fatal(err)
	}
	if tr.Tokens != 4 || tr.Layers != 3 || tr.K != 2 || tr.Experts != 8 || tr.Model != "recorded" {
		t.Fatalf("header %+v", tr.Header)
	}
	for _, c := range []struct {
		t, l int
		ids  []uint16
		w    []float32
	}{
		{0, 0, []uint16{0, 1}, []float32{0, 0}},
		{3, 0, []uint16{0, 1}, []float32{0, 0}},
		{2, 1, []uint16{3, 7}, []float32{0.75, 0.25}},
		{1, 2, []uint16{3, 4}, []float32{0.5, 0.5}},
		{3, 2, []uint16{5, 7}, []float32{0.75, 0.25}},
	} {
		ids, w := tr.At(c.t, c.l)
		if !slices.Equal(ids, c.ids) || !slices.Equal(w, c.w) {
			t.Errorf("token %d layer %d: %v %v, want %v %v", c.t, c.l, ids, w, c.ids, c.w)
		}
	}
	path := filepath.Join(t.TempDir(), "rec.fmrt")
	if err := tr.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil || !slices.Equal(back.IDs, tr.IDs) || !slices.Equal(back.Weights, tr.Weights) || back.Header.Model != "recorded" {
		t.Fatalf("load: %v", err)
	}
}

// TestRecorderErrors: a record outside the shape, a duplicate expert, an
// empty recording and a skipped position are errors naming what is wrong.
func TestRecorderErrors(t *testing.T) {
	if _, err := NewRecorder(2, 4, 5); err == nil || !strings.Contains(err.Error(), "k 5") {
		t.Errorf("K above experts: %v", err)
	}
	for _, c := range []struct {
		rec  func(r *Recorder)
		want string
	}{
		{func(r *Recorder) {}, "nothing recorded"},
		{func(r *Recorder) { r.Record(2, 0, []int{0, 1}, []float32{1, 0}) }, "record of layer 2"},
		{func(r *Recorder) { r.Record(0, 0, []int{0}, []float32{1}) }, "1 experts"},
		{func(r *Recorder) { r.Record(0, 0, []int{0, 4}, []float32{1, 0}) }, "expert 4 outside [0, 4)"},
		{func(r *Recorder) { r.Record(0, 0, []int{1, 1}, []float32{1, 0}) }, "expert 1 chosen twice"},
		{func(r *Recorder) { r.Record(0, 1, []int{0, 1}, []float32{1, 0}) }, "position 0 was never routed"},
		{func(r *Recorder) { r.Record(1, 0, []int{0, 1}, []float32{float32(-1), 0}) }, "weight -1"},
	} {
		r, _ := NewRecorder(2, 4, 2)
		c.rec(r)
		if _, err := r.Trace(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.want, err)
		}
	}
}

// TestRouted: layers whose weights are all 0 are left out, the others kept
// in order with their entries.
func TestRouted(t *testing.T) {
	r, _ := NewRecorder(4, 8, 2)
	for pos := 0; pos < 3; pos++ {
		for _, l := range []int{1, 3} {
			r.Record(l, pos, []int{pos + l, 7}, []float32{0.5, 0.5})
		}
	}
	tr, err := r.Trace()
	if err != nil {
		t.Fatal(err)
	}
	got, drop := tr.Routed()
	if got == nil || got.Layers != 2 || got.Tokens != 3 || !slices.Equal(drop, []int{0, 2}) {
		t.Fatalf("Routed: %+v, dropped %v", got, drop)
	}
	for pos := 0; pos < 3; pos++ {
		for i, l := range []int{1, 3} {
			ids, _ := got.At(pos, i)
			if !slices.Equal(ids, []uint16{uint16(pos + l), 7}) {
				t.Errorf("token %d layer %d (was %d): %v", pos, i, l, ids)
			}
		}
	}
	if same, drop := got.Routed(); same != got || drop != nil {
		t.Error("a fully routed trace was copied")
	}
	dense, _ := New(Header{Layers: 2, Experts: 4, K: 1, Tokens: 1})
	if none, drop := dense.Routed(); none != nil || len(drop) != 2 {
		t.Errorf("all dense: %v %v", none, drop)
	}
}
