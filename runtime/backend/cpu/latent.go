package cpu

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// LatentAttention is Multi-head Latent Attention with kv_b_proj absorbed (backend.Backend).
// Per (token, head), in parallel: the query's latent ql = Σ_i qn[i]·Wk_h[i] as a combination of
// head h's key rows of kv_b_proj, decoded to float32 once per registered tensor (H·Nope·KVL·4
// bytes: 33.5 MB a layer for DeepSeek-V3-671B); the scores; the latent output as a
// combination of the cached latents. The output absorption then runs per head through the
// backend's matmul kernels on head h's value rows of kv_b_proj in place, in their format.
func (be *Backend) LatentAttention(out, q backend.Buffer, wkv backend.Tensor, lat, kr backend.Buffer, s backend.LatentShape, pos0 int) error {
	t, err := be.tensor(wkv, "latent attention kv_b_proj")
	if err != nil {
		return err
	}
	var d [4][]float32
	for i, b := range []struct {
		b    backend.Buffer
		what string
	}{{out, "latent attention out"}, {q, "latent attention q"}, {lat, "latent attention latents"}, {kr, "latent attention rotary keys"}} {
		if d[i], err = be.data(b.b, b.what); err != nil {
			return err
		}
	}
	od, qd, ld, rd := d[0], d[1], d[2], d[3]
	if err := chk.LatentAttention(s, pos0, t.w.Rows, t.w.Cols, len(qd), len(ld), len(rd), len(od)); err != nil {
		return err
	}
	a := t.absorbed(s)
	T, H := s.T, s.H
	ls := &be.lat
	ol := grow(&ls.ol, T*H*s.KVL)
	x, y := grow(&ls.x, T*s.KVL), grow(&ls.y, T*s.V)

	j := &be.latJob
	*j = latentJob{s: s, pos0: pos0, asm: deltaAsm(be.isa), wk: a.k, qd: qd, ol: ol, ld: ld, rd: rd, scratch: be.scratch}
	be.parallelN(T*H, T*H*((pos0+T)*(2*s.KVL+s.Rope)+s.Nope*s.KVL), j)
	*j = latentJob{}

	// out[t, h] = Wv_h·ol: a matmul by head h's value rows of kv_b_proj.
	for h := 0; h < H; h++ {
		for i := 0; i < T; i++ {
			copy(x[i*s.KVL:(i+1)*s.KVL], ol[(i*H+h)*s.KVL:])
		}
		be.matmul(y[:T*s.V], &a.v[h], x[:T*s.KVL], T)
		for i := 0; i < T; i++ {
			copy(od[(i*H+h)*s.V:(i*H+h+1)*s.V], y[i*s.V:])
		}
	}
	return nil
}

// latentScratch is LatentAttention's host scratch, kept by the backend.
type latentScratch struct{ ol, x, y []float32 }

// absorbedWeights are kv_b_proj's per-head blocks as LatentAttention multiplies them.
type absorbedWeights struct {
	shape backend.LatentShape // the H, Nope, V they were cut for
	k     []float32           // [H, Nope, KVL]: the key rows Wk_h, decoded
	v     []backend.Weight    // [V, KVL]: rows of the weight, in place
}

// absorbed returns t's per-head blocks for s, cached on a registered tensor.
func (t *tensor) absorbed(s backend.LatentShape) *absorbedWeights {
	if a := t.lat; a != nil && a.shape.H == s.H && a.shape.Nope == s.Nope && a.shape.V == s.V {
		return a
	}
	w := &t.w
	a := &absorbedWeights{shape: s}
	a.k = make([]float32, s.H*s.Nope*s.KVL)
	for h := 0; h < s.H; h++ {
		base := h * (s.Nope + s.V)
		for i := 0; i < s.Nope; i++ {
			dequantRow(w, base+i, a.k[(h*s.Nope+i)*s.KVL:(h*s.Nope+i+1)*s.KVL])
		}
		a.v = append(a.v, rowRange(w, base+s.Nope, s.V))
	}
	if !t.bound {
		t.lat = a
	}
	return a
}

// rowRange is rows [r0, r0+n) of w, sharing its bytes (every format stores rows, and their
// scales and biases, one after another).
func rowRange(w *backend.Weight, r0, n int) backend.Weight {
	sub := *w
	sub.Rows = n
	rb := w.RowBytes()
	sub.Data = w.Data[r0*rb : (r0+n)*rb]
	if w.Format.Quantized() {
		ng := 2 * w.Groups()
		sub.Scales = w.Scales[r0*ng : (r0+n)*ng]
		sub.Biases = w.Biases[r0*ng : (r0+n)*ng]
	}
	return sub
}

// latentJob is the query absorption and the attention over the latents as a pool task over
// (token, head) pairs.
type latentJob struct {
	s       backend.LatentShape
	pos0    int
	asm     bool // combine4AVX2
	wk      []float32
	qd, ol  []float32
	ld, rd  []float32
	scratch [][]float32
}

func (j *latentJob) do(part, lo, hi int) {
	s := j.s
	H, L, R, qw := s.H, s.KVL, s.Rope, s.Nope+s.Rope
	n := j.pos0 + s.T
	buf := grow(&j.scratch[part], n+L)
	sc, ql := buf[:n], buf[n:n+L]
	for th := lo; th < hi; th++ {
		t, h := th/H, th%H
		q := j.qd[th*qw : (th+1)*qw]
		matRow(ql, q[:s.Nope], j.wk[h*s.Nope*L:(h+1)*s.Nope*L], L, j.asm)
		qr := q[s.Nope:]
		last := j.pos0 + t
		m := float32(math.Inf(-1))
		for p := 0; p <= last; p++ {
			v := s.Scale * (dot32(ql, j.ld[p*L:(p+1)*L]) + dot32(qr, j.rd[p*R:(p+1)*R]))
			sc[p] = v
			m = max(m, v)
		}
		var sum float64
		for p := 0; p <= last; p++ {
			e := math.Exp(float64(sc[p] - m))
			sc[p] = float32(e)
			sum += e
		}
		o := j.ol[th*L : (th+1)*L]
		matRow(o, sc[:last+1], j.ld[:(last+1)*L], L, j.asm)
		inv := float32(1 / sum)
		for i := range o {
			o[i] *= inv
		}
	}
}
