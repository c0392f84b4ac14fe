// Package routetrace is routing traces: for every token position and layer,
// the K experts a router chose and their weights. It generates them from
// statistical models fitted to flash-moe's measurements of
// Qwen3.5-397B-A17B, reads and writes them (docs/route-trace.md), replays
// them in place of a model's router, and simulates expert caches on them.
package routetrace

import "fmt"

// Trace is a routing trace. IDs and Weights hold Tokens×Layers×K entries,
// index (t·Layers + l)·K + j, each (token, layer) ordered by weight,
// largest first.
type Trace struct {
	Header
	IDs     []uint16
	Weights []float32
}

// Header describes a trace (the file's JSON header).
type Header struct {
	Layers  int                `json:"layers"`
	Experts int                `json:"experts"`
	K       int                `json:"k"`
	Tokens  int                `json:"tokens"`
	Model   string             `json:"model"`
	Seed    uint64             `json:"seed"`
	Preset  string             `json:"preset,omitempty"`
	Params  map[string]float64 `json:"params,omitempty"`
}

// New returns an empty trace of the given shape (ids 0, weights 0).
func New(h Header) (*Trace, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	n := h.Tokens * h.Layers * h.K
	return &Trace{Header: h, IDs: make([]uint16, n), Weights: make([]float32, n)}, nil
}

func (h *Header) check() error {
	switch {
	case h.Layers < 1:
		return fmt.Errorf("layers %d: want at least 1", h.Layers)
	case h.Experts < 1 || h.Experts > 1<<16:
		return fmt.Errorf("experts %d: want 1 to 65536", h.Experts)
	case h.K < 1 || h.K > h.Experts:
		return fmt.Errorf("k %d: want 1 to experts (%d)", h.K, h.Experts)
	case h.Tokens < 1:
		return fmt.Errorf("tokens %d: want at least 1", h.Tokens)
	case !fewerEntries(1<<31, h.Tokens, h.Layers, h.K):
		return fmt.Errorf("%d tokens × %d layers × k %d: too many entries", h.Tokens, h.Layers, h.K)
	}
	return nil
}

// fewerEntries reports whether the product of dims (each at least 1) is
// below limit, without overflowing: a header's dimensions come from a
// file, and a product that wrapped around would pass a plain check.
func fewerEntries(limit int64, dims ...int) bool {
	n := int64(1)
	for _, d := range dims {
		if int64(d) >= limit/n+1 {
			return false
		}
		n *= int64(d)
	}
	return n < limit
}

// At returns the ids and weights of token t at layer l (views into the trace).
func (tr *Trace) At(t, l int) ([]uint16, []float32) {
	o := (t*tr.Layers + l) * tr.K
	return tr.IDs[o : o+tr.K], tr.Weights[o : o+tr.K]
}

// Stream is layer l's access stream, ids only: Tokens×K entries, token t's
// at [t·K, (t+1)·K). This is what a per-layer expert cache sees.
func (tr *Trace) Stream(l int) []int {
	s := make([]int, 0, tr.Tokens*tr.K)
	for t := 0; t < tr.Tokens; t++ {
		ids, _ := tr.At(t, l)
		for _, e := range ids {
			s = append(s, int(e))
		}
	}
	return s
}

// TopK returns the trace cut to each token's k highest-weight experts,
// weights renormalised to sum as before. A generated trace's top 4 is the
// trace Generate makes at K=4 with the same seed (see Generate).
func (tr *Trace) TopK(k int) (*Trace, error) {
	if k < 1 || k > tr.K {
		return nil, fmt.Errorf("routetrace: top %d of a K=%d trace", k, tr.K)
	}
	h := tr.Header
	h.K = k
	out, _ := New(h)
	for t := 0; t < tr.Tokens; t++ {
		for l := 0; l < tr.Layers; l++ {
			ids, w := tr.At(t, l)
			oi, ow := out.At(t, l)
			copy(oi, ids[:k])
			var all, top float64
			for j, x := range w {
				all += float64(x)
				if j < k {
					top += float64(x)
				}
			}
			for j := range ow {
				if top > 0 {
					ow[j] = float32(float64(w[j]) * all / top)
				}
			}
		}
	}
	return out, nil
}

// Check says whether the trace fits a model of layers layers, experts
// experts per layer, run at k experts per token, and covers positions
// 0…tokens-1.
func (tr *Trace) Check(layers, experts, k, tokens int) error {
	switch {
	case tr.Layers != layers:
		return fmt.Errorf("the trace has %d layers, the model %d", tr.Layers, layers)
	case tr.Experts != experts:
		return fmt.Errorf("the trace has %d experts per layer, the model %d", tr.Experts, experts)
	case tr.K != k:
		return fmt.Errorf("the trace has K=%d experts per token, the model runs with K=%d (make a trace with --k %d, or run with --k %d)", tr.K, k, k, tr.K)
	case tr.Tokens < tokens:
		return fmt.Errorf("the trace covers %d token positions, the run needs %d (traces are not wrapped around: make a longer one, or ask for fewer --tokens)", tr.Tokens, tokens)
	}
	return nil
}

// Choose writes the trace's choice for token position pos at layer l into
// idx and w (len K each): the runtime's router override.
func (tr *Trace) Choose(l, pos int, idx []int, w []float32) error {
	if l < 0 || l >= tr.Layers {
		return fmt.Errorf("route trace: layer %d, the trace has %d", l, tr.Layers)
	}
	if pos < 0 || pos >= tr.Tokens {
		return fmt.Errorf("route trace: token position %d, the trace covers %d", pos, tr.Tokens)
	}
	if len(idx) != tr.K || len(w) != tr.K {
		return fmt.Errorf("route trace: K=%d, the model asks for %d experts", tr.K, len(idx))
	}
	ids, ws := tr.At(pos, l)
	for j, e := range ids {
		idx[j] = int(e)
	}
	copy(w, ws)
	return nil
}
