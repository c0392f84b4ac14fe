package model

import (
	"fmt"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// Weights that share their input are registered, where the backend can
// (backend.RowConcatenator, CUDA), as the rows of one tensor: a one-token
// step then runs them as one matvec launch, whose output is the parts'
// outputs one after the other, bit for bit what the parts compute alone
// (each row's sum is the same). A GatedDeltaNet layer's four input
// projections become one launch instead of four, a shared expert's gate
// and up one instead of two: at decode a layer's fixed cost is mostly
// launches of small matvecs. The parts stay tensors of their own (views of
// the same device memory) for prompts, whose outputs are laid out per
// token. Nothing is held twice.

// fuseOff registers every weight alone (tests compare the two).
var fuseOff = false

// registry registers the manifest's tensors as the families ask for them.
type registry struct {
	m       *Model
	man     *format.Manifest
	byName  map[string]*format.Tensor
	err     error
	missing []string
}

func newRegistry(m *Model, man *format.Manifest) *registry {
	m.t = make(map[string]backend.Tensor, len(man.Tensors))
	r := &registry{m: m, man: man, byName: make(map[string]*format.Tensor, len(man.Tensors))}
	for i := range man.Tensors {
		r.byName[man.Tensors[i].Name] = &man.Tensors[i]
	}
	return r
}

// weight is the named tensor's descriptor; ok is false (and the name
// recorded as missing) where the manifest lacks it.
func (r *registry) weight(name string) (w backend.Weight, ok bool) {
	t, ok := r.byName[name]
	if !ok {
		r.missing = append(r.missing, name)
		return w, false
	}
	w, err := weight(t, r.m.weights.Data)
	if err != nil {
		r.fail(err)
		return w, false
	}
	return w, true
}

func (r *registry) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// get registers the named tensor (once) and returns it; nil after an error.
func (r *registry) get(name string) backend.Tensor {
	if t, ok := r.m.t[name]; ok {
		return t
	}
	w, ok := r.weight(name)
	if !ok {
		return nil
	}
	t, err := r.m.be.Register(w)
	if err != nil {
		r.fail(fmt.Errorf("model: register %s: %w", name, err))
		return nil
	}
	r.m.t[name] = t
	return t
}

// rows is layerSource.rows.
func (r *registry) rows(names ...string) (backend.Tensor, []backend.Tensor) {
	parts := make([]backend.Tensor, len(names))
	if rc, ok := r.m.be.(backend.RowConcatenator); ok && !fuseOff && r.fresh(names) {
		ws := make([]backend.Weight, len(names))
		all := true
		for i, n := range names {
			ws[i], ok = r.weight(n)
			all = all && ok
		}
		if !all {
			return nil, parts
		}
		// A refusal (formats or widths differ, alignment) leaves the
		// parts to be registered alone.
		if whole, ps, err := rc.RegisterRows(ws); err == nil {
			for i, n := range names {
				r.m.t[n] = ps[i]
			}
			return whole, ps
		}
	}
	for i, n := range names {
		parts[i] = r.get(n)
	}
	return nil, parts
}

// fresh reports whether none of names is registered yet.
func (r *registry) fresh(names []string) bool {
	for _, n := range names {
		if _, ok := r.m.t[n]; ok {
			return false
		}
	}
	return true
}

// rest registers the tensors no family asked for (m.t holds every
// tensor of the manifest), in the manifest's order.
func (r *registry) rest() {
	for i := range r.man.Tensors {
		if r.err != nil {
			return
		}
		if n := r.man.Tensors[i].Name; r.m.t[n] == nil {
			r.get(n)
		}
	}
}

// done is the registration's error: the first failure, or the tensors the
// families needed and the manifest lacks.
func (r *registry) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.missing) > 0 {
		return fmt.Errorf("model: manifest lacks %d tensors, first %s", len(r.missing), r.missing[0])
	}
	r.rest()
	return r.err
}
