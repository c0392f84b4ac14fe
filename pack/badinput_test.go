package pack

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/fmoe/fmoe/quant"
)

// copyDir copies a fixture so a test can damage it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

type stEntry struct {
	name, dtype string
	shape       []int
	data        []byte
}

func writeSafetensors(t *testing.T, path string, entries []stEntry) {
	t.Helper()
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var off int64
	for _, e := range entries {
		hdr[e.name] = map[string]any{"dtype": e.dtype, "shape": e.shape, "data_offsets": []int64{off, off + int64(len(e.data))}}
		off += int64(len(e.data))
	}
	h, _ := json.Marshal(hdr)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	for _, e := range entries {
		out = append(out, e.data...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// shardOf returns the shard file holding a tensor, per the index.
func shardOf(t *testing.T, dir, tensor string) string {
	t.Helper()
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(raw, &idx)
	return idx.WeightMap[tensor]
}

// rewriteShard rewrites the shard holding tensor, letting mutate change or drop it (and the
// index entry with it).
func rewriteShard(t *testing.T, dir, tensor string, mutate func(e *stEntry) bool) {
	t.Helper()
	shard := shardOf(t, dir, tensor)
	data, err := os.ReadFile(filepath.Join(dir, shard))
	if err != nil {
		t.Fatal(err)
	}
	hdr, start, err := parseHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(hdr, func(i, j int) bool { return hdr[i].Offsets[0] < hdr[j].Offsets[0] })
	var entries []stEntry
	dropped := false
	for _, h := range hdr {
		e := stEntry{h.Name, h.DType, h.Shape, data[start+h.Offsets[0] : start+h.Offsets[1]]}
		if h.Name == tensor && !mutate(&e) {
			dropped = true
			continue
		}
		entries = append(entries, e)
	}
	writeSafetensors(t, filepath.Join(dir, shard), entries)
	if dropped {
		path := filepath.Join(dir, "model.safetensors.index.json")
		raw, _ := os.ReadFile(path)
		var idx map[string]any
		json.Unmarshal(raw, &idx)
		delete(idx["weight_map"].(map[string]any), tensor)
		raw, _ = json.Marshal(idx)
		os.WriteFile(path, raw, 0o644)
	}
}

func editConfig(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	raw, _ := os.ReadFile(path)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, _ = json.Marshal(m)
	os.WriteFile(path, raw, 0o644)
}

// expectFailure converts and checks the error mentions every want string and that nothing
// that looks like a pack is left behind.
func expectFailure(t *testing.T, src string, o Options, want ...string) {
	t.Helper()
	parent := t.TempDir()
	o.In, o.Out = src, filepath.Join(parent, "out")
	_, err := Convert(context.Background(), o)
	t.Logf("error: %v", err)
	if err == nil {
		t.Fatalf("convert succeeded, want an error mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("a failed pack left %d entries in the output's parent (%s...)", len(entries), entries[0].Name())
	}
}

const gateTensor = "model.layers.1.mlp.gate.weight"

func TestBadInputs(t *testing.T) {
	cases := []struct {
		name  string
		src   string
		bad   func(t *testing.T, dir string)
		wants []string
	}{
		{"missing shard", "hf", func(t *testing.T, d string) {
			os.Remove(filepath.Join(d, "model-00007-of-00034.safetensors"))
		}, []string{"model-00007-of-00034.safetensors", "missing"}},
		{"truncated shard", "hf", func(t *testing.T, d string) {
			p := filepath.Join(d, shardOf(t, d, gateTensor))
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-100)
		}, []string{"truncated"}},
		{"corrupt header", "hf", func(t *testing.T, d string) {
			p := filepath.Join(d, shardOf(t, d, gateTensor))
			data, _ := os.ReadFile(p)
			copy(data[8:], "{garbage")
			os.WriteFile(p, data, 0o644)
		}, []string{"corrupt safetensors header", shardOf(t, tiny+"hf", gateTensor)}},
		{"absurd header length", "hf", func(t *testing.T, d string) {
			p := filepath.Join(d, shardOf(t, d, gateTensor))
			data, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint64(data, 1<<62)
			os.WriteFile(p, data, 0o644)
		}, []string{"header length"}},
		{"missing tensor", "hf", func(t *testing.T, d string) {
			rewriteShard(t, d, gateTensor, func(*stEntry) bool { return false })
		}, []string{gateTensor, "missing"}},
		{"wrong shape", "hf", func(t *testing.T, d string) {
			rewriteShard(t, d, gateTensor, func(e *stEntry) bool {
				e.shape = []int{e.shape[1], e.shape[0]}
				return true
			})
		}, []string{gateTensor, "shape [128 16]", "[16 128]"}},
		{"unsupported dtype", "hf", func(t *testing.T, d string) {
			rewriteShard(t, d, gateTensor, func(e *stEntry) bool {
				e.dtype = "F8_E4M3"
				e.data = e.data[:len(e.data)/2]
				return true
			})
		}, []string{gateTensor, "F8_E4M3"}},
		{"config missing field", "hf", func(t *testing.T, d string) {
			editConfig(t, d, func(m map[string]any) { delete(m, "num_experts") })
		}, []string{"config.json", "num_experts"}},
		{"nested config missing field", "hf-vl", func(t *testing.T, d string) {
			editConfig(t, d, func(m map[string]any) { delete(m["text_config"].(map[string]any), "hidden_size") })
		}, []string{"config.json", "hidden_size"}},
		{"unknown architecture", "hf", func(t *testing.T, d string) {
			editConfig(t, d, func(m map[string]any) { m["model_type"] = "llama"; m["architectures"] = []string{"LlamaForCausalLM"} })
		}, []string{"unknown architecture", "llama"}},
		{"index names absent tensor", "mlx-4bit", func(t *testing.T, d string) {
			path := filepath.Join(d, "model.safetensors.index.json")
			raw, _ := os.ReadFile(path)
			var idx map[string]any
			json.Unmarshal(raw, &idx)
			idx["weight_map"].(map[string]any)["language_model.model.layers.0.extra"] = "model-00001-of-00003.safetensors"
			raw, _ = json.Marshal(idx)
			os.WriteFile(path, raw, 0o644)
		}, []string{"language_model.model.layers.0.extra", "model-00001-of-00003.safetensors"}},
		{"quantised shape mismatch", "mlx-4bit", func(t *testing.T, d string) {
			name := "language_model.model.layers.0.mlp.gate.weight" // 8-bit per config
			editConfig(t, d, func(m map[string]any) {
				delete(m["quantization"].(map[string]any), "language_model.model.layers.0.mlp.gate")
				delete(m, "quantization_config")
			})
			_ = name
		}, []string{"language_model.model.layers.0.mlp.gate.weight", "4-bit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t, tiny+c.src)
			c.bad(t, d)
			expectFailure(t, d, Options{}, c.wants...)
		})
	}
}

// fullDisk fails every write once limit bytes have been written in total, like ENOSPC.
type fullDisk struct {
	left *int64
	f    *os.File
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if int64(len(p)) > *d.left {
		n := int(*d.left)
		*d.left = 0
		d.f.Write(p[:n])
		return n, &os.PathError{Op: "write", Path: d.f.Name(), Err: syscall.ENOSPC}
	}
	*d.left -= int64(len(p))
	return d.f.Write(p)
}
func (d *fullDisk) Sync() error  { return d.f.Sync() }
func (d *fullDisk) Close() error { return d.f.Close() }

func TestDiskFull(t *testing.T) {
	for _, limit := range []int64{1000, 600_000, 3_000_000} {
		left := limit
		o := Options{create: func(p string) (outFile, error) {
			f, err := os.Create(p)
			if err != nil {
				return nil, err
			}
			return &fullDisk{left: &left, f: f}, nil
		}}
		expectFailure(t, tiny+"hf", o, "no space left on device")
	}
}

func TestExistingOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o755)
	os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644)
	_, err := Convert(context.Background(), Options{In: tiny + "mlx-4bit", Out: out})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("got %v, want a refusal naming --force", err)
	}
	if _, err := os.Stat(filepath.Join(out, "keep")); err != nil {
		t.Fatal("refused pack touched the existing output")
	}
	if _, err := Convert(context.Background(), Options{In: tiny + "mlx-4bit", Out: out, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "keep")); !errors.Is(err, os.ErrNotExist) {
		t.Error("--force kept files of the old output")
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("%d entries beside the output after --force, want 1", len(entries))
	}
}

func TestCancelledLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	parent := t.TempDir()
	_, err := Convert(ctx, Options{In: tiny + "hf", Out: filepath.Join(parent, "out")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("cancelled pack left %d entries", len(entries))
	}
}

func TestBadOptions(t *testing.T) {
	expectFailure(t, tiny+"hf", Options{Bits: 3}, "--bits 3")
	expectFailure(t, tiny+"hf", Options{DenseBits: 2}, "--dense-bits 2")
	expectFailure(t, tiny+"mlx-4bit", Options{Bits: 2}, "requant")
	expectFailure(t, tiny+"hf", Options{Rule: "best"}, "--rule")
	expectFailure(t, filepath.Join(t.TempDir(), "nope"), Options{}, "config.json")
}

// readAllTensors loads every tensor of a sharded fixture, for rewriting it in another form.
func readAllTensors(t *testing.T, dir string) []stEntry {
	t.Helper()
	var out []stEntry
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".safetensors") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		hdr, start, err := parseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hdr {
			out = append(out, stEntry{h.Name, h.DType, h.Shape, data[start+h.Offsets[0] : start+h.Offsets[1]]})
		}
	}
	return out
}

// A single model.safetensors without an index packs exactly like the sharded original.
func TestSingleFileCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "single")
	os.Mkdir(dir, 0o755)
	writeSafetensors(t, filepath.Join(dir, "model.safetensors"), readAllTensors(t, tiny+"mlx-4bit"))
	cfg, _ := os.ReadFile(tiny + "mlx-4bit/config.json")
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	single := convert(t, dir, Options{})
	sharded := convert(t, tiny+"mlx-4bit", Options{})
	if !bytes.Equal(single.weights, sharded.weights) {
		t.Error("model_weights.bin differs between the single-file and sharded checkpoints")
	}
	for l := range sharded.m.Experts[0].Layers {
		a, b := single.m.Experts[0].Layers[l].CRC32C, sharded.m.Experts[0].Layers[l].CRC32C
		if !slices.Equal(a, b) {
			t.Fatalf("layer %d experts differ", l)
		}
	}
}

// F16 and F32 sources are read too: a converted copy of the bf16 fixture packs at 16 bits with
// its float tensors kept in the source dtype, and packs at 4 bits.
func TestF16AndF32Sources(t *testing.T) {
	for _, dtype := range []string{"F16", "F32"} {
		t.Run(dtype, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "src")
			os.Mkdir(dir, 0o755)
			var conv []stEntry
			for _, e := range readAllTensors(t, tiny+"hf") {
				f := decodeFloats(t, e.dtype, e.data)
				n, _ := quant.ElemSize(dtype)
				b := make([]byte, len(f)*n)
				if err := quant.EncodeFloats(dtype, f, b); err != nil {
					t.Fatal(err)
				}
				conv = append(conv, stEntry{e.name, dtype, e.shape, b})
			}
			writeSafetensors(t, filepath.Join(dir, "model.safetensors"), conv)
			cfg, _ := os.ReadFile(tiny + "hf/config.json")
			os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
			p := convert(t, dir, Options{Bits: 16})
			for _, ten := range p.m.Tensors {
				if !specOf(&p.m.Config, ten.Name).NormShift && ten.DType != dtype {
					t.Errorf("%s stored as %s, want the source's %s", ten.Name, ten.DType, dtype)
				}
			}
			if _, err := Convert(context.Background(), Options{In: dir, Out: filepath.Join(t.TempDir(), "q4"), Bits: 4}); err != nil {
				t.Fatalf("4-bit pack of an %s source: %v", dtype, err)
			}
		})
	}
}
