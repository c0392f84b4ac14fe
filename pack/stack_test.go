package pack_test

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/partial"
	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/verify"
)

// stackSource packs the tiny Qwen3.5 fixture (8 layers: GatedDeltaNet, and full attention at 3
// and 7) with a 2-bit set beside the 4-bit one, so that every kind of range is stacked.
func stackSource(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	if _, err := pack.Convert(context.Background(), pack.Options{In: "../testdata/tiny/hf", Out: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := pack.Requant(context.Background(), pack.RequantOptions{Model: dir, Bits: 2}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readSpan(t *testing.T, dir string, s format.Span) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, format.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, s.Size)
	if _, err := f.ReadAt(b, s.Offset); err != nil {
		t.Fatal(err)
	}
	return b
}

func tensorBytes(t *testing.T, dir string, tn *format.Tensor) [][]byte {
	var out [][]byte
	for _, s := range tn.Spans() {
		out = append(out, readSpan(t, dir, s.Span))
	}
	return out
}

func sameTensor(t *testing.T, srcDir string, src *format.Tensor, dstDir string, dst *format.Tensor) {
	t.Helper()
	a, b := tensorBytes(t, srcDir, src), tensorBytes(t, dstDir, dst)
	if len(a) != len(b) {
		t.Fatalf("%s: %d ranges, source %s has %d", dst.Name, len(b), src.Name, len(a))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Errorf("%s range %d differs from the source's %s", dst.Name, i, src.Name)
		}
	}
}

// TestStackCopiesLayer: every layer of the stacked pack is the chosen layer, byte for byte (its
// dense tensors, both expert sets' files, the per-layer config), the rest is the source's, the
// output verifies and runs, and the source is untouched.
func TestStackCopiesLayer(t *testing.T) {
	src := stackSource(t)
	before := pack.Snapshot(t, src)
	sm, err := format.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ layer, n int }{{0, 2}, {3, 3}, {7, 1}} {
		out := filepath.Join(t.TempDir(), "stacked")
		if err := pack.Stack(context.Background(), pack.StackOptions{Model: src, Out: out, Layer: c.layer, Layers: c.n}); err != nil {
			t.Fatalf("layer %d x %d: %v", c.layer, c.n, err)
		}
		m, err := format.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.NumHiddenLayers != c.n || len(m.Config.LayerTypes) != c.n {
			t.Fatalf("layer %d x %d: %d layers, %d layer types", c.layer, c.n, m.Config.NumHiddenLayers, len(m.Config.LayerTypes))
		}
		for l := range c.n {
			if got, want := m.Config.LayerTypes[l], sm.Config.LayerTypes[c.layer]; got != want {
				t.Errorf("layer %d x %d: layer %d is %s, want %s", c.layer, c.n, l, got, want)
			}
		}
		checked := 0
		for i := range sm.Tensors {
			st := &sm.Tensors[i]
			if rest, in := strings.CutPrefix(st.Name, format.LayerPrefix(c.layer)); in {
				for l := range c.n {
					dt, err := m.Tensor(format.LayerPrefix(l) + rest)
					if err != nil {
						t.Fatal(err)
					}
					sameTensor(t, src, st, out, dt)
					checked++
				}
				continue
			}
			if strings.HasPrefix(st.Name, "model.layers.") {
				continue // another layer's: not in the stack
			}
			dt, err := m.Tensor(st.Name)
			if err != nil {
				t.Errorf("layer %d x %d: %v", c.layer, c.n, err)
				continue
			}
			sameTensor(t, src, st, out, dt)
			checked++
		}
		if checked != len(m.Tensors) {
			t.Errorf("layer %d x %d: compared %d tensors of %d", c.layer, c.n, checked, len(m.Tensors))
		}
		if len(m.Experts) != 2 {
			t.Fatalf("%d expert sets, want 2", len(m.Experts))
		}
		for i, set := range m.Experts {
			want, err := os.ReadFile(filepath.Join(src, sm.Experts[i].Dir, sm.Experts[i].Layers[c.layer].File))
			if err != nil {
				t.Fatal(err)
			}
			for l := range c.n {
				got, err := os.ReadFile(filepath.Join(out, set.Dir, set.Layers[l].File))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s layer %d: not the source's layer %d", set.Dir, l, c.layer)
				}
			}
		}
		rep, err := verify.Run(context.Background(), verify.Options{Model: out})
		if err != nil || !rep.OK {
			t.Fatalf("layer %d x %d: verify: %v %+v", c.layer, c.n, err, rep)
		}
		if rep.Read.ExpertBlocks != 2*c.n*sm.Config.NumExperts {
			t.Errorf("verify read %d expert blocks, want %d", rep.Read.ExpertBlocks, 2*c.n*sm.Config.NumExperts)
		}
		runsFinite(t, out, sm.Config.VocabSize)
	}
	pack.SameSnapshot(t, before, pack.Snapshot(t, src))
}

// runsFinite opens a pack on the CPU and checks one forward pass gives finite logits.
func runsFinite(t *testing.T, dir string, vocab int) {
	t.Helper()
	m, err := model.Open(dir, model.Options{Backend: cpu.New(cpu.Options{Threads: 1})})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	logits, err := s.Forward([]int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != vocab {
		t.Fatalf("%d logits, want %d", len(logits), vocab)
	}
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d is %v", i, v)
		}
	}
}

// TestStackRefuses: bad arguments and a damaged source are named, nothing is left behind, and
// the source is untouched.
func TestStackRefuses(t *testing.T) {
	src := stackSource(t)
	sm, err := format.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "stacked")
	run := func(o pack.StackOptions) error {
		o.Model = src
		if o.Out == "" {
			o.Out = out
		}
		return pack.Stack(context.Background(), o)
	}
	before := pack.Snapshot(t, src)
	for _, c := range []struct {
		o    pack.StackOptions
		want string
	}{
		{pack.StackOptions{Layer: 8, Layers: 2}, "--layer 8"},
		{pack.StackOptions{Layer: -1, Layers: 2}, "--layer -1"},
		{pack.StackOptions{Layer: 0, Layers: 0}, "--layers 0"},
		{pack.StackOptions{Layer: 0, Layers: 5000}, "--layers 5000"},
		{pack.StackOptions{Layer: 0, Layers: 2, Out: filepath.Join(src, "inner")}, "refusing to write --out"},
		{pack.StackOptions{Layer: 0, Layers: 2, Out: filepath.Join(src, sm.Experts[0].Dir)}, "refusing to write --out"},
	} {
		err := run(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.o, err, c.want)
		}
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(pack.StackOptions{Layer: 0, Layers: 2}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("an existing --out: %v", err)
	}
	os.Remove(out)
	pack.SameSnapshot(t, before, pack.Snapshot(t, src))

	// A flipped byte in expert 5 of layer 3's 4-bit file: named, and no output left.
	set := sm.Experts[0]
	path := filepath.Join(src, set.Dir, set.Layers[3].File)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[5*set.Stride+100] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(pack.StackOptions{Layer: 3, Layers: 2})
	if err == nil || !strings.Contains(err.Error(), "expert 5") || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a damaged expert: %v, want it named", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("an output after a failure: %v", err)
	}
	if left := partial.Find(parent); len(left) > 0 {
		t.Errorf("partial outputs left: %v", left)
	}
	// The other layers are sound: stacking one of them still works.
	if err := run(pack.StackOptions{Layer: 0, Layers: 2}); err != nil {
		t.Errorf("layer 0 beside a damaged layer 3: %v", err)
	}
}
