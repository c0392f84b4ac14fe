// Package golden checks a packed model against reference outputs from Hugging Face
// transformers: logits at every prompt position and a greedy continuation decoded through the
// caches. It is how a user checks a conversion (`fmoe-verify golden`) and how fmoe checks itself.
package golden

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/nlpodyssey/safetensors"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/model"
)

// File is one golden safetensors file (format: testdata/tiny/golden/README.json): input_ids
// int64 [T], logits f32 [T, vocab], generated_ids int64 [N], generated_logits f32 [N, vocab].
type File struct {
	InputIDs        []int
	Logits          []float32
	Generated       []int
	GeneratedLogits []float32
	Vocab           int
}

// Load reads a golden file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not a safetensors file: %v", path, err)
	}
	f := &File{}
	get := func(name string, dtype safetensors.DType, rank int) (safetensors.TensorView, error) {
		tv, ok := st.Tensor(name)
		if !ok {
			return tv, fmt.Errorf("%s: tensor %s is missing", path, name)
		}
		if tv.DType() != dtype || len(tv.Shape()) != rank {
			return tv, fmt.Errorf("%s: tensor %s is %s %v, want %s of rank %d", path, name, tv.DType(), tv.Shape(), dtype, rank)
		}
		return tv, nil
	}
	ids, err := get("input_ids", safetensors.I64, 1)
	if err != nil {
		return nil, err
	}
	lg, err := get("logits", safetensors.F32, 2)
	if err != nil {
		return nil, err
	}
	f.InputIDs = int64s(ids.Data())
	f.Logits = float32s(lg.Data())
	f.Vocab = int(lg.Shape()[1])
	if int(lg.Shape()[0]) != len(f.InputIDs) {
		return nil, fmt.Errorf("%s: logits has %d rows for %d input ids", path, lg.Shape()[0], len(f.InputIDs))
	}
	if g, err := get("generated_ids", safetensors.I64, 1); err == nil {
		gl, err := get("generated_logits", safetensors.F32, 2)
		if err != nil {
			return nil, err
		}
		f.Generated = int64s(g.Data())
		f.GeneratedLogits = float32s(gl.Data())
		if int(gl.Shape()[0]) != len(f.Generated) || int(gl.Shape()[1]) != f.Vocab {
			return nil, fmt.Errorf("%s: generated_logits is %v for %d generated ids", path, gl.Shape(), len(f.Generated))
		}
	}
	return f, nil
}

func int64s(b []byte) []int {
	out := make([]int, len(b)/8)
	for i := range out {
		out[i] = int(int64(binary.LittleEndian.Uint64(b[8*i:])))
	}
	return out
}

func float32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// RelL2 is ‖got − want‖ / ‖want‖.
func RelL2(got, want []float32) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// Report is the outcome of Check.
type Report struct {
	Positions      int
	WorstPrompt    float64 // worst per-position relative L2 error of the prompt logits
	WorstPromptPos int
	Generated      int     // greedy tokens replayed
	SameTokens     int     // of which our argmax equals the reference's
	FirstMismatch  int     // index of the first differing generated token, -1 if none
	WorstGenerated float64 // worst relative L2 error of the generated-step logits
	Tolerance      float64
}

// Pass reports whether every error is within tolerance and every greedy token matches.
func (r *Report) Pass() bool {
	return r.WorstPrompt < r.Tolerance && r.WorstGenerated < r.Tolerance && r.SameTokens == r.Generated
}

// Check runs f's prompt through m in one batched prefill, compares the logits at every position,
// then decodes the reference's greedy continuation one token at a time through the caches,
// feeding the reference tokens so one early difference does not hide the later steps.
func Check(m *model.Model, f *File, tol float64) (*Report, error) {
	if f.Vocab != m.Config.VocabSize {
		return nil, fmt.Errorf("golden vocabulary %d, model vocabulary %d: not this model's golden file", f.Vocab, m.Config.VocabSize)
	}
	s, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close() // its KV cache and scratch now, not when the collector runs
	r := &Report{Positions: len(f.InputIDs), Generated: len(f.Generated), FirstMismatch: -1, Tolerance: tol}
	all, err := s.ForwardAll(f.InputIDs)
	if err != nil {
		return nil, err
	}
	V := f.Vocab
	for p := 0; p < len(f.InputIDs); p++ {
		if e := RelL2(all[p*V:(p+1)*V], f.Logits[p*V:(p+1)*V]); e > r.WorstPrompt || math.IsNaN(e) {
			r.WorstPrompt, r.WorstPromptPos = e, p
		}
	}
	logits := all[(len(f.InputIDs)-1)*V:]
	for i, want := range f.Generated {
		if e := RelL2(logits, f.GeneratedLogits[i*V:(i+1)*V]); e > r.WorstGenerated || math.IsNaN(e) {
			r.WorstGenerated = e
		}
		if backend.FirstMax(logits) == want {
			r.SameTokens++
		} else if r.FirstMismatch < 0 {
			r.FirstMismatch = i
		}
		if i+1 < len(f.Generated) {
			if logits, err = s.Forward([]int{want}); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}
