package verify

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/pack"
)

const tiny = "../testdata/tiny/"

// packs caches one clean pack per layout for the test binary; tests that damage a pack work on
// a copy.
var (
	packMu sync.Mutex
	packs  = map[string]string{}
)

func cleanPack(t *testing.T, layout string) string {
	t.Helper()
	packMu.Lock()
	defer packMu.Unlock()
	if dir, ok := packs[layout]; ok {
		return dir
	}
	dir := filepath.Join(sharedTemp(t), layout)
	if _, err := pack.Convert(context.Background(), pack.Options{In: tiny + layout, Out: dir}); err != nil {
		t.Fatalf("pack %s: %v", layout, err)
	}
	packs[layout] = dir
	return dir
}

var shared string

// sharedTemp is a temporary directory for the whole test binary, removed by TestMain.
func sharedTemp(t testing.TB) string {
	if shared == "" {
		d, err := os.MkdirTemp("", "fmoe-verify-test-")
		if err != nil {
			t.Fatal(err)
		}
		shared = d
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != "" {
		os.RemoveAll(shared)
	}
	os.Exit(code)
}

// copyPack copies a clean pack into t.TempDir() so a test can damage it.
func copyPack(t *testing.T, layout string) (string, *format.Manifest) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "model")
	if out, err := exec.Command("cp", "-r", cleanPack(t, layout), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	m, err := format.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	return dst, m
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("verify %s: %v", o.Model, err)
	}
	return r
}

// flip XORs one byte of a file with 0xff.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && filepath.Base(p) != format.ManifestName {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestCleanPacksVerify(t *testing.T) {
	for _, layout := range []string{"hf", "hf-vl", "mlx-4bit"} {
		t.Run(layout, func(t *testing.T) {
			dir := cleanPack(t, layout)
			r := run(t, Options{Model: dir, Source: tiny + layout})
			if !r.OK {
				t.Fatalf("clean %s pack fails: %v", layout, r.Problems)
			}
			m, _ := format.Open(dir)
			// Each byte read exactly once: the files' total, no more, no less.
			if want := dirBytes(t, dir); r.Read.Bytes != want {
				t.Errorf("read %d bytes, the pack holds %d", r.Read.Bytes, want)
			}
			if want := m.Config.NumHiddenLayers * m.Config.NumExperts; r.Read.ExpertBlocks != want {
				t.Errorf("%d expert blocks checked, want %d", r.Read.ExpertBlocks, want)
			}
			var spans int
			for i := range m.Tensors {
				spans += len(m.Tensors[i].Spans())
			}
			if r.Read.Tensors != spans {
				t.Errorf("%d tensor ranges checked, want %d", r.Read.Tensors, spans)
			}
			if r.Source == nil || len(r.Source.Kinds) == 0 {
				t.Fatal("no source comparison in the report")
			}
			for _, k := range r.Source.Kinds {
				if k.Failed != 0 || (k.Mode == "bound" && (k.MaxRatio > 1 || k.MaxRatio == 0)) || (k.Mode == "exact" && k.MaxAbs != 0) {
					t.Errorf("kind %+v", k)
				}
			}
		})
	}
}

// want asserts exactly one problem matching check and every non-empty field of loc.
func wantProblem(t *testing.T, r *Report, check string, loc Problem) Problem {
	t.Helper()
	if r.OK || r.ProblemCount != 1 {
		t.Fatalf("want exactly one %s problem, got OK=%v %d: %v", check, r.OK, r.ProblemCount, r.Problems)
	}
	p := r.Problems[0]
	switch {
	case p.Check != check,
		loc.File != "" && p.File != loc.File,
		loc.Tensor != "" && p.Tensor != loc.Tensor,
		loc.Set != "" && p.Set != loc.Set,
		loc.Part != "" && p.Part != loc.Part,
		loc.Projection != "" && p.Projection != loc.Projection,
		loc.Layer != nil && (p.Layer == nil || *p.Layer != *loc.Layer),
		loc.Expert != nil && (p.Expert == nil || *p.Expert != *loc.Expert),
		loc.Offset != nil && (p.Offset == nil || *p.Offset != *loc.Offset):
		t.Fatalf("got %+v\nwant %s at %+v", p, check, loc)
	}
	return p
}

func TestFlipDenseTensorByte(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	w := filepath.Join(dir, format.WeightsName)
	q, _ := m.Tensor("model.layers.3.self_attn.q_proj.weight")
	n, _ := m.Tensor("model.layers.0.input_layernorm.weight")
	cases := []struct {
		t    *format.Tensor
		part string
		span format.Span
	}{{q, "data", q.Data}, {q, "scales", *q.Scales}, {q, "biases", *q.Biases}, {n, "data", n.Data}}
	for _, c := range cases {
		for _, off := range []int64{c.span.Offset, c.span.Offset + c.span.Size/2, c.span.End() - 1} {
			flip(t, w, off)
			r := run(t, Options{Model: dir})
			p := wantProblem(t, r, "checksum", Problem{File: format.WeightsName, Tensor: c.t.Name, Part: c.part, Offset: &off})
			if !strings.Contains(p.Message, c.t.Name) {
				t.Errorf("message does not name the tensor: %s", p.Message)
			}
			flip(t, w, off)
		}
	}
	if r := run(t, Options{Model: dir}); !r.OK {
		t.Fatalf("restored pack fails: %v", r.Problems)
	}
}

func TestFlipWeightsPadding(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	// The first range whose end is not 256-aligned is followed by zero padding.
	var off int64 = -1
	var before string
	for i := range m.Tensors {
		for _, s := range m.Tensors[i].Spans() {
			if s.Span.End()%format.WeightsAlign != 0 && off < 0 {
				off, before = s.Span.End(), m.Tensors[i].Name
			}
		}
	}
	if off < 0 {
		t.Fatal("no padding in the tiny pack")
	}
	flip(t, filepath.Join(dir, format.WeightsName), off)
	p := wantProblem(t, run(t, Options{Model: dir}), "padding", Problem{File: format.WeightsName, Offset: &off})
	if !strings.Contains(p.Message, before) {
		t.Errorf("message does not name the neighbouring tensor %s: %s", before, p.Message)
	}
}

func TestFlipExpertByte(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	set := &m.Experts[0]
	l, e := 5, 11
	path := filepath.Join(dir, set.Dir, set.Layers[l].File)
	base := int64(e) * set.Stride
	type at struct {
		proj, part string
		off        int64
	}
	var cases []at
	for _, pr := range set.Projections {
		for _, s := range pr.Spans() {
			cases = append(cases, at{pr.Name, s.Part, s.Span.Offset}, at{pr.Name, s.Part, s.Span.End() - 1})
		}
	}
	gaps := blockGaps(set)
	if len(gaps) == 0 {
		t.Fatal("the tiny pack's blocks have no padding")
	}
	cases = append(cases, at{"padding", "", gaps[0].start}, at{"padding", "", set.Stride - 1})
	for _, c := range cases {
		off := base + c.off
		flip(t, path, off)
		r := run(t, Options{Model: dir})
		check := "checksum"
		p := wantProblem(t, r, check, Problem{File: filepath.Join(set.Dir, set.Layers[l].File), Layer: &l, Expert: &e, Projection: c.proj, Part: c.part, Offset: &off})
		if !strings.Contains(p.String(), "layer 5") || !strings.Contains(p.String(), "expert 11") || !strings.Contains(p.String(), c.proj) {
			t.Errorf("message does not locate the damage: %s", p)
		}
		flip(t, path, off)
	}
	// Two damaged bytes cannot be placed, but the block is still named.
	flip(t, path, base+10)
	flip(t, path, base+20)
	p := wantProblem(t, run(t, Options{Model: dir}), "checksum", Problem{Layer: &l, Expert: &e})
	if p.Offset != nil || !strings.Contains(p.Message, "more than one byte") {
		t.Errorf("two damaged bytes: %+v", p)
	}
}

func TestFlipManifestByte(t *testing.T) {
	dir, _ := copyPack(t, "mlx-4bit")
	path := filepath.Join(dir, format.ManifestName)
	st, _ := os.Stat(path)
	for _, off := range []int64{0, 5, 21, 40, st.Size() / 2, st.Size() - 2} {
		flip(t, path, off)
		r := run(t, Options{Model: dir})
		if r.OK || r.ProblemCount != 1 || r.Problems[0].File != format.ManifestName || r.Problems[0].Check != "manifest" {
			t.Fatalf("byte %d of the manifest flipped: %+v", off, r.Problems)
		}
		flip(t, path, off)
	}
}

func TestTruncatedExpertFile(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	set := &m.Experts[0]
	path := filepath.Join(dir, set.Dir, set.Layers[3].File)
	if err := os.Truncate(path, set.Layers[3].Size-100); err != nil {
		t.Fatal(err)
	}
	l, e := 3, m.Config.NumExperts-1
	r := run(t, Options{Model: dir})
	p := wantProblem(t, r, "structure", Problem{File: filepath.Join(set.Dir, set.Layers[3].File), Layer: &l, Expert: &e})
	if !strings.Contains(p.Message, "truncated") {
		t.Errorf("message: %s", p.Message)
	}
	// Every complete block is still checked.
	if want := m.Config.NumHiddenLayers*m.Config.NumExperts - 1; r.Read.ExpertBlocks != want {
		t.Errorf("%d blocks checked, want %d", r.Read.ExpertBlocks, want)
	}
}

func TestTruncatedWeights(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	if err := os.Truncate(filepath.Join(dir, format.WeightsName), m.Weights.Size-1); err != nil {
		t.Fatal(err)
	}
	r := run(t, Options{Model: dir})
	last := m.Tensors[len(m.Tensors)-1]
	if r.OK || r.ProblemCount != 2 || !strings.Contains(r.Problems[0].Message, "truncated") || r.Problems[1].Tensor != last.Name {
		t.Fatalf("want the truncation and the cut tensor %s: %v", last.Name, r.Problems)
	}
}

func TestMissingTokenizerAndSideFileDamage(t *testing.T) {
	dir, _ := copyPack(t, "mlx-4bit")
	os.Remove(filepath.Join(dir, "tokenizer.json"))
	flip(t, filepath.Join(dir, "chat_template.jinja"), 3)
	r := run(t, Options{Model: dir})
	got := map[string]string{}
	for _, p := range r.Problems {
		got[p.File] = p.Check
	}
	if r.OK || got["tokenizer.json"] != "structure" || got["chat_template.jinja"] != "checksum" {
		t.Fatalf("problems: %v", r.Problems)
	}
}

func TestWorkersAgree(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	set := &m.Experts[0]
	flip(t, filepath.Join(dir, set.Dir, set.Layers[7].File), 2*set.Stride+100)
	q, _ := m.Tensor("lm_head.weight")
	flip(t, filepath.Join(dir, format.WeightsName), q.Data.Offset+7)
	a := run(t, Options{Model: dir, Workers: 1})
	b := run(t, Options{Model: dir, Workers: 8})
	if a.ProblemCount != 2 || b.ProblemCount != 2 || a.Read.Bytes != b.Read.Bytes {
		t.Fatalf("1 worker: %v\n8 workers: %v", a.Problems, b.Problems)
	}
}

func TestNotADirectory(t *testing.T) {
	if _, err := Run(context.Background(), Options{Model: filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Fatal("a missing --model is not an error")
	}
	r := run(t, Options{Model: t.TempDir(), Progress: io.Discard})
	if r.OK || r.Problems[0].Check != "structure" || r.Problems[0].File != format.ManifestName {
		t.Fatalf("empty directory: %v", r.Problems)
	}
}

func copyManifest(t *testing.T, dir string) (*format.Manifest, error) {
	t.Helper()
	m, err := format.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, nil
}
