package routetrace

import "fmt"

// Recorder collects the routing of a real run, position by position, into
// a trace (model "recorded"). The runtime calls Record for every token
// position and layer whose router ran; Trace then covers positions
// 0…the highest recorded.
type Recorder struct {
	layers, experts, k int
	ids                []uint16
	weights            []float32
	seen               []bool // per (position, layer): Record was called
	err                error
}

// NewRecorder returns a recorder for a model of layers layers and experts
// routed experts per layer, run at k experts per token.
func NewRecorder(layers, experts, k int) (*Recorder, error) {
	h := Header{Layers: layers, Experts: experts, K: k, Tokens: 1}
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("routetrace: %w", err)
	}
	return &Recorder{layers: layers, experts: experts, k: k}, nil
}

// Record stores the experts and weights token position pos used at layer
// l. A position recorded again (a rewound session) keeps the later choice.
// The first bad call is kept and returned by Trace: the run itself goes on.
func (r *Recorder) Record(l, pos int, idx []int, w []float32) {
	if r.err != nil {
		return
	}
	if l < 0 || l >= r.layers || pos < 0 || len(idx) != r.k || len(w) != r.k {
		r.err = fmt.Errorf("routetrace: record of layer %d, position %d, %d experts: the trace has %d layers, K=%d", l, pos, len(idx), r.layers, r.k)
		return
	}
	for n := pos + 1; len(r.seen) < n*r.layers; {
		r.ids = append(r.ids, make([]uint16, r.layers*r.k)...)
		r.weights = append(r.weights, make([]float32, r.layers*r.k)...)
		r.seen = append(r.seen, make([]bool, r.layers)...)
	}
	o := (pos*r.layers + l) * r.k
	for j, e := range idx {
		if e < 0 || e >= r.experts {
			r.err = fmt.Errorf("routetrace: position %d layer %d: expert %d outside [0, %d)", pos, l, e, r.experts)
			return
		}
		r.ids[o+j] = uint16(e)
	}
	copy(r.weights[o:o+r.k], w)
	r.seen[pos*r.layers+l] = true
}

// Trace returns what was recorded. A layer without routed experts (a dense
// layer, such as DeepSeek-V3's first three) never calls Record: its
// entries are ids 0…K−1 with weight 0, as docs/route-trace.md says. A
// position no layer recorded at is an error (the run skipped it).
func (r *Recorder) Trace() (*Trace, error) {
	if r.err != nil {
		return nil, r.err
	}
	tokens := len(r.seen) / r.layers
	if tokens == 0 {
		return nil, fmt.Errorf("routetrace: nothing recorded (the model has no routed layer, or nothing ran)")
	}
	for t := 0; t < tokens; t++ {
		any := false
		for l := 0; l < r.layers; l++ {
			if r.seen[t*r.layers+l] {
				any = true
				continue
			}
			o := (t*r.layers + l) * r.k
			for j := 0; j < r.k; j++ {
				r.ids[o+j], r.weights[o+j] = uint16(j), 0
			}
		}
		if !any {
			return nil, fmt.Errorf("routetrace: position %d was never routed (recorded %d positions)", t, tokens)
		}
	}
	tr, err := New(Header{Layers: r.layers, Experts: r.experts, K: r.k, Tokens: tokens, Model: "recorded"})
	if err != nil {
		return nil, fmt.Errorf("routetrace: %w", err)
	}
	copy(tr.IDs, r.ids)
	copy(tr.Weights, r.weights)
	return tr, tr.validate()
}

// Routed returns the trace without its unrouted layers (every weight 0 at
// every position: dense layers of a recorded trace) and the indices of the
// layers it left out; the trace itself when every layer is routed. Cache
// statistics on a dense layer's placeholder ids would count hits no cache
// sees. It returns nil when no layer is routed.
func (tr *Trace) Routed() (*Trace, []int) {
	var keep, drop []int
	for l := 0; l < tr.Layers; l++ {
		routed := false
		for t := 0; t < tr.Tokens && !routed; t++ {
			_, w := tr.At(t, l)
			for _, x := range w {
				routed = routed || x != 0
			}
		}
		if routed {
			keep = append(keep, l)
		} else {
			drop = append(drop, l)
		}
	}
	if len(drop) == 0 {
		return tr, nil
	}
	if len(keep) == 0 {
		return nil, drop
	}
	h := tr.Header
	h.Layers = len(keep)
	out, _ := New(h)
	for t := 0; t < tr.Tokens; t++ {
		for i, l := range keep {
			ids, w := tr.At(t, l)
			oi, ow := out.At(t, i)
			copy(oi, ids)
			copy(ow, w)
		}
	}
	return out, drop
}
