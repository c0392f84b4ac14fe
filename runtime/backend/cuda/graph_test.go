//go:build linux && cgo

package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestGraphReplay: a recorded decode layer (norm, projections, DeltaNet
// with its state, output projection, residual add) replayed step after
// step gives bit for bit what the ops give run one by one; reads are
// refused while recording; a growth of the backend's scratch makes the
// graph stale.
func TestGraphReplay(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	const H = 256
	s := backend.DeltaShape{T: 1, Hk: 2, Dk: 32, Hv: 4, Dv: 32, Eps: 1e-6}
	rng := rand.New(rand.NewPCG(7, 11))
	reg := func(w backend.Weight) backend.Tensor {
		tt, err := be.Register(w)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	q4 := func(r, c int) backend.Tensor {
		w, _ := backendtest.RandomWeight(rng, backend.Q4, r, c, 64)
		return reg(w)
	}
	vec := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * float32(rng.NormFloat64())
		}
		return v
	}
	norm := reg(backendtest.DenseF32(1, H, vec(H, 1)))
	aLog := reg(backendtest.DenseF32(1, s.Hv, vec(s.Hv, 1)))
	dt := reg(backendtest.DenseF32(1, s.Hv, vec(s.Hv, 0.5)))
	wqkv, wa, wb, wo := q4(s.QKVLen(), H), q4(s.Hv, H), q4(s.Hv, H), q4(H, s.Hv*s.Dv)
	h0 := vec(H, 1)

	type bufs struct{ h, xn, qkv, a, b, y, o, state backend.Buffer }
	alloc := func() *bufs {
		var x bufs
		for _, p := range []struct {
			b *backend.Buffer
			n int
		}{{&x.h, H}, {&x.xn, H}, {&x.qkv, s.QKVLen()}, {&x.a, s.Hv}, {&x.b, s.Hv}, {&x.y, s.Hv * s.Dv}, {&x.o, H}, {&x.state, s.StateLen()}} {
			b, err := be.Alloc(p.n)
			if err != nil {
				t.Fatal(err)
			}
			*p.b = b
		}
		if err := be.Write(x.h, h0); err != nil {
			t.Fatal(err)
		}
		return &x
	}
	layer := func(x *bufs) error {
		return errors.Join(
			be.RMSNorm(x.xn, x.h, backend.Rows(1, H), norm, 1e-6),
			be.MatMul(x.qkv, wqkv, x.xn, 1), be.MatMul(x.a, wa, x.xn, 1), be.MatMul(x.b, wb, x.xn, 1),
			be.DeltaNet(x.y, x.qkv, x.a, x.b, aLog, dt, x.state, s),
			be.MatMul(x.o, wo, x.y, 1), be.Add(x.h, x.o))
	}
	read := func(b backend.Buffer) []float32 {
		v := make([]float32, b.Len())
		if err := be.Read(v, b); err != nil {
			t.Fatal(err)
		}
		return v
	}

	eager, rec := alloc(), alloc()
	if err := be.BeginGraph(); err != nil {
		t.Fatal(err)
	}
	if err := layer(rec); err != nil {
		t.Fatal(err)
	}
	if err := be.Read(make([]float32, H), rec.h); err == nil {
		t.Fatal("Read while recording: no error")
	}
	g, err := be.EndGraph()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	for step := range 5 {
		if err := layer(eager); err != nil {
			t.Fatal(err)
		}
		if err := g.Replay(); err != nil {
			t.Fatal(err)
		}
		want, got := read(eager.h), read(rec.h)
		for i := range want {
			if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
				t.Fatalf("step %d: h[%d] replayed %v, ops %v", step, i, got[i], want[i])
			}
		}
	}
	// A 64-token DeltaNet grows the scratch the graph recorded.
	big := s
	big.T = 64
	y, _ := be.Alloc(big.T * s.Hv * s.Dv)
	qkv, _ := be.Alloc(big.T * s.QKVLen())
	ab, _ := be.Alloc(big.T * s.Hv)
	if err := be.DeltaNet(y, qkv, ab, ab, aLog, dt, eager.state, big); err != nil {
		t.Fatal(err)
	}
	if err := g.Replay(); !errors.Is(err, backend.ErrGraphStale) {
		t.Fatalf("replay after the scratch grew: %v, want ErrGraphStale", err)
	}
}

// TestCombineToken: the one-launch combine of a token's MoE output is bit
// for bit Zero, ScatterAdd, GatedAdd (or Add) and Add, for 1 to 32 expert
// rows, with a gated, an ungated and no shared expert.
func TestCombineToken(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	const H = 1000 // not a multiple of the block
	rng := rand.New(rand.NewPCG(3, 5))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	put := func(v []float32) backend.Buffer {
		b, err := be.Alloc(len(v))
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Write(b, v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, n := range []int{1, 4, 10, 32} {
		for mode := range 3 {
			h0, eo, w, sdv, g := vec(H), vec(n*H), vec(n), vec(H), vec(1)
			eob, sd, gate := put(eo), put(sdv), put(g)
			rows := make([]int, n)
			// The ops: acc = 0; acc += Σ w·eo; acc += shared; h += acc.
			href, acc := put(h0), put(make([]float32, H))
			err := errors.Join(be.Zero(acc), be.ScatterAdd(acc, eob, rows, w, H))
			var sdArg, gArg backend.Buffer
			switch mode {
			case 1:
				err = errors.Join(err, be.GatedAdd(acc, sd, gate, 1))
				sdArg, gArg = sd, gate
			case 2:
				err = errors.Join(err, be.Add(acc, sd))
				sdArg = sd
			}
			hf := put(h0)
			err = errors.Join(err, be.Add(href, acc), be.CombineToken(hf, eob, w, sdArg, gArg))
			if err != nil {
				t.Fatal(err)
			}
			want, got := make([]float32, H), make([]float32, H)
			if err := errors.Join(be.Read(want, href), be.Read(got, hf)); err != nil {
				t.Fatal(err)
			}
			for j := range want {
				if math.Float32bits(want[j]) != math.Float32bits(got[j]) {
					t.Fatalf("%d rows, mode %d: h[%d] fused %v, ops %v", n, mode, j, got[j], want[j])
				}
			}
		}
	}
	if err := be.CombineToken(nil, nil, make([]float32, 33), nil, nil); err == nil {
		t.Fatal("combine of nil buffers: no error")
	}
}
