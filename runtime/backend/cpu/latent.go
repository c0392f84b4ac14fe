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

// latentBlock is how many cached positions a pass takes for all of a part's (token, head)
// pairs before moving on: 64 latents of 512 values are 128 KiB, read from L2 by every head
// instead of from memory by each (the latents of a long context are megabytes).
const latentBlock = 64

func (j *latentJob) do(part, lo, hi int) {
	s := j.s
	H, L, R, qw := s.H, s.KVL, s.Rope, s.Nope+s.Rope
	n, k := j.pos0+s.T, hi-lo
	buf := grow(&j.scratch[part], k*(L+n))
	qls, scs := buf[:k*L], buf[k*L:]
	last := func(th int) int { return j.pos0 + th/H }
	for th := lo; th < hi; th++ {
		h := th % H
		matRow(qls[(th-lo)*L:(th-lo+1)*L], j.qd[th*qw:th*qw+s.Nope], j.wk[h*s.Nope*L:(h+1)*s.Nope*L], L, j.asm)
	}
	for p0 := 0; p0 < n; p0 += latentBlock {
		for th := lo; th < hi; th++ {
			ql, qr, sc := qls[(th-lo)*L:(th-lo+1)*L], j.qd[th*qw+s.Nope:(th+1)*qw], scs[(th-lo)*n:(th-lo+1)*n]
			for p := p0; p < min(p0+latentBlock, last(th)+1); p++ {
				sc[p] = s.Scale * (dot32(ql, j.ld[p*L:(p+1)*L]) + dot32(qr, j.rd[p*R:(p+1)*R]))
			}
		}
	}
	sums := qls[:k] // the queries' latents are spent: their room holds the softmax sums
	for th := lo; th < hi; th++ {
		sc := scs[(th-lo)*n : (th-lo)*n+last(th)+1]
		m := float32(math.Inf(-1))
		for _, v := range sc {
			m = max(m, v)
		}
		var sum float64
		for p, v := range sc {
			e := math.Exp(float64(v - m))
			sc[p] = float32(e)
			sum += e
		}
		sums[th-lo] = float32(1 / sum)
		clear(j.ol[th*L : (th+1)*L])
	}
	for p0 := 0; p0 < n; p0 += latentBlock {
		for th := lo; th < hi; th++ {
			if p1 := min(p0+latentBlock, last(th)+1); p1 > p0 {
				combine(j.ol[th*L:(th+1)*L], scs[(th-lo)*n+p0:(th-lo)*n+p1], j.ld[p0*L:p1*L], L, j.asm)
			}
		}
	}
	for th := lo; th < hi; th++ {
		o, inv := j.ol[th*L:(th+1)*L], sums[th-lo]
		for i := range o {
			o[i] *= inv
		}
	}
}
