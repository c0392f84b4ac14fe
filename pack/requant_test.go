package pack

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// rqPack packs a tiny fixture into t.TempDir().
func rqPack(t *testing.T, layout string, o Options) string {
	t.Helper()
	o.In, o.Out = tiny+layout, filepath.Join(t.TempDir(), "model")
	if _, err := Convert(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.Out
}

// snapshot is every file of a model directory, to prove a failed run changed nothing.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			out[rel+"@"] = []byte(target)
			return err
		}
		if fi.IsDir() {
			out[rel+"/"] = nil
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, a, b map[string][]byte) {
	t.Helper()
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			t.Errorf("%s changed or vanished", k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s appeared", k)
		}
	}
}

func blockOf(t *testing.T, dir string, set *format.ExpertSet, l, e int) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, set.Dir, set.Layers[l].File))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, set.Stride)
	if _, err := f.ReadAt(b, int64(e)*set.Stride); err != nil {
		t.Fatal(err)
	}
	return b
}

func projValues(t *testing.T, p *format.Tensor, blk []byte) []float32 {
	t.Helper()
	rows, cols := p.Shape[0], p.Shape[1]
	m, err := quant.NewMatrix(rows, cols, p.Bits, p.GroupSize)
	if err != nil {
		t.Fatal(err)
	}
	quant.DecodeUint32s(blk[p.Data.Offset:p.Data.End()], m.Weight)
	quant.DecodeUint16s(blk[p.Scales.Offset:p.Scales.End()], m.Scales)
	quant.DecodeUint16s(blk[p.Biases.Offset:p.Biases.End()], m.Biases)
	out := make([]float32, rows*cols)
	if err := quant.Dequantize(out, m); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every 2-bit element is within quant.ErrorBound of the 4-bit value it was made from, for each
// rule; the 4-bit files are untouched and the manifest records the set.
func TestRequantWithinBound(t *testing.T) {
	for _, rule := range []string{"", "mlx"} {
		t.Run("rule="+rule, func(t *testing.T) {
			dir := rqPack(t, "mlx-4bit", Options{})
			before := snapshot(t, filepath.Join(dir, format.ExpertsDir))
			st, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: rule})
			if err != nil {
				t.Fatal(err)
			}
			sameSnapshot(t, before, snapshot(t, filepath.Join(dir, format.ExpertsDir)))
			m, err := format.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := m.ExpertSet(2)
			if err != nil {
				t.Fatal(err)
			}
			if set.Dir != "packed_experts_2bit" || len(m.Experts) != 2 || st.Experts != 8*16 {
				t.Fatalf("set %s, %d sets, %d experts", set.Dir, len(m.Experts), st.Experts)
			}
			r, _ := quant.ParseRule(st.Rule)
			var sse, ref float64
			for l := range set.Layers {
				for e := 0; e < m.Config.NumExperts; e++ {
					b4, b2 := blockOf(t, dir, &m.Experts[0], l, e), blockOf(t, dir, set, l, e)
					if format.CRC32C(b2) != set.Layers[l].CRC32C[e] {
						t.Fatalf("layer %d expert %d: checksum does not match the manifest", l, e)
					}
					for i := range set.Projections {
						v4 := projValues(t, &m.Experts[0].Projections[i], b4)
						v2 := projValues(t, &set.Projections[i], b2)
						g := set.Projections[i].GroupSize
						for g0 := 0; g0 < len(v4); g0 += g {
							lo, hi := slices.Min(v4[g0:g0+g]), slices.Max(v4[g0:g0+g])
							bound := quant.ErrorBound(r, 2, lo, hi)
							for j := g0; j < g0+g; j++ {
								d := float64(v2[j]) - float64(v4[j])
								sse += d * d
								ref += float64(v4[j]) * float64(v4[j])
								if float32(math.Abs(d)) > bound {
									t.Fatalf("layer %d expert %d %s element %d: |%v - %v| > bound %v", l, e, set.Projections[i].Name, j, v2[j], v4[j], bound)
								}
							}
						}
					}
				}
			}
			t.Logf("rule %s: 2-bit relative RMSE vs 4-bit %.2f%%", st.Rule, 100*math.Sqrt(sse/ref))
		})
	}
}

// A failure or cancellation part-way leaves every file of the model as it was: no 2-bit
// directory, no temporary directory, the same manifest.
func TestRequantInterruptedLeavesModelUntouched(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	before := snapshot(t, dir)
	boom := errors.New("disk on fire")
	_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, afterBlock: func(l, e int) error {
		if l == 3 && e == 5 {
			return boom
		}
		return nil
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v", err)
	}
	sameSnapshot(t, before, snapshot(t, dir))

	ctx, cancel := context.WithCancel(context.Background())
	_, err = Requant(ctx, RequantOptions{Model: dir, Bits: 2, Workers: 1, afterBlock: func(l, e int) error {
		if l == 6 {
			cancel()
		}
		return nil
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	sameSnapshot(t, before, snapshot(t, dir))
}

func TestRequantExistingSet(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax"}); err != nil {
		t.Fatal(err)
	}
	_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run without --force: %v", err)
	}
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "mlx", Force: true}); err != nil {
		t.Fatal(err)
	}
	m, err := format.Open(dir)
	if err != nil || len(m.Experts) != 2 {
		t.Fatalf("after --force: %v, %d sets", err, len(m.Experts))
	}
	// A complete set the manifest does not record (a run died before its manifest) is replaced.
	dir2 := rqPack(t, "mlx-4bit", Options{})
	os.MkdirAll(filepath.Join(dir2, "packed_experts_2bit"), 0o755)
	os.WriteFile(filepath.Join(dir2, "packed_experts_2bit", "layer_00.bin"), []byte("stale"), 0o644)
	if _, err := Requant(context.Background(), RequantOptions{Model: dir2, Bits: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := format.Open(dir2); err != nil {
		t.Fatal(err)
	}
}

func TestRequantBadInput(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	for _, c := range []struct {
		o    RequantOptions
		want string
	}{
		{RequantOptions{Bits: 4}, "only lowers"},
		{RequantOptions{Bits: 3}, "want 2, 4 or 8"},
		{RequantOptions{Bits: 2, Rule: "bogus"}, "unknown rule"},
		{RequantOptions{Bits: 2, Model: t.TempDir()}, "manifest"},
	} {
		if c.o.Model == "" {
			c.o.Model = dir
		}
		if _, err := Requant(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.o, err, c.want)
		}
	}
	bf := rqPack(t, "hf", Options{Bits: 16})
	if _, err := Requant(context.Background(), RequantOptions{Model: bf, Bits: 2}); err == nil || !strings.Contains(err.Error(), "bf16") {
		t.Errorf("bf16 pack: %v", err)
	}
	// A damaged 4-bit block stops the run before anything is written.
	m, _ := format.Open(dir)
	set := &m.Experts[0]
	path := filepath.Join(dir, set.Dir, set.Layers[2].File)
	b, _ := os.ReadFile(path)
	b[4*set.Stride+100] ^= 1
	os.WriteFile(path, b, 0o644)
	before := snapshot(t, dir)
	_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2})
	if err == nil || !strings.Contains(err.Error(), "layer_02.bin expert 4: checksum mismatch") {
		t.Fatalf("damaged block: %v", err)
	}
	sameSnapshot(t, before, snapshot(t, dir))
}
