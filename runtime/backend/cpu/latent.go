package cpu

import (
	"encoding/binary"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// LatentAttention is Multi-head Latent Attention with kv_b_proj absorbed (backend.Backend).
// Both absorptions run as per-head matmuls through the backend's own kernels: the output one
// on head h's value rows of kv_b_proj in place (a row range of the weight, any format), the
// query one on head h's key block transposed to float32 [KVL, Nope], which no format stores and
// which is built once per registered tensor (H·Nope·KVL·4 bytes: 33.5 MB a layer for
// DeepSeek-V3-671B). The attention between them is over the latents themselves.
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
	T, H, qw := s.T, s.H, s.Nope+s.Rope
	ls := &be.lat
	ql, ol := grow(&ls.ql, T*H*s.KVL), grow(&ls.ol, T*H*s.KVL)
	x, y := grow(&ls.x, T*max(s.Nope, s.KVL)), grow(&ls.y, T*max(s.KVL, s.V))

	// ql[t, h] = Wk_hᵀ·qn: a matmul by the transposed key block.
	for h := 0; h < H; h++ {
		for i := 0; i < T; i++ {
			copy(x[i*s.Nope:(i+1)*s.Nope], qd[(i*H+h)*qw:])
		}
		be.matmul(y[:T*s.KVL], &a.k[h], x[:T*s.Nope], T)
		for i := 0; i < T; i++ {
			copy(ql[(i*H+h)*s.KVL:(i*H+h+1)*s.KVL], y[i*s.KVL:])
		}
	}

	j := &be.latJob
	*j = latentJob{s: s, pos0: pos0, qd: qd, ql: ql, ol: ol, ld: ld, rd: rd, scratch: be.scratch}
	be.parallelN(T*H, T*H*(pos0+T)*(2*s.KVL+s.Rope), j)
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
type latentScratch struct{ ql, ol, x, y []float32 }

// absorbedWeights are kv_b_proj's per-head blocks as LatentAttention multiplies them.
type absorbedWeights struct {
	shape backend.LatentShape // the H, Nope, V they were cut for
	k     []backend.Weight    // [KVL, Nope] float32: Wk_hᵀ
	v     []backend.Weight    // [V, KVL]: rows of the weight, in place
}

// absorbed returns t's per-head blocks for s, cached on a registered tensor.
func (t *tensor) absorbed(s backend.LatentShape) *absorbedWeights {
	if a := t.lat; a != nil && a.shape.H == s.H && a.shape.Nope == s.Nope && a.shape.V == s.V {
		return a
	}
	w := &t.w
	a := &absorbedWeights{shape: s}
	row := make([]float32, w.Cols)
	for h := 0; h < s.H; h++ {
		base := h * (s.Nope + s.V)
		kt := make([]byte, 4*s.KVL*s.Nope)
		for i := 0; i < s.Nope; i++ {
			dequantRow(w, base+i, row)
			for c, v := range row {
				binary.LittleEndian.PutUint32(kt[4*(c*s.Nope+i):], math.Float32bits(v))
			}
		}
		a.k = append(a.k, backend.Weight{Format: backend.F32, Rows: s.KVL, Cols: s.Nope, Data: kt})
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

// latentJob is the attention over the latents as a pool task over (token, head) pairs.
type latentJob struct {
	s                  backend.LatentShape
	pos0               int
	qd, ql, ol, ld, rd []float32
	scratch            [][]float32
}

func (j *latentJob) do(part, lo, hi int) {
	s := j.s
	H, L, R := s.H, s.KVL, s.Rope
	n := j.pos0 + s.T
	buf := grow(&j.scratch[part], n)
	for th := lo; th < hi; th++ {
		t := th / H
		qlat := j.ql[th*L : (th+1)*L]
		qr := j.qd[th*(s.Nope+R)+s.Nope : (th+1)*(s.Nope+R)]
		last := j.pos0 + t
		m := float32(math.Inf(-1))
		for p := 0; p <= last; p++ {
			var a, b float32
			for i, x := range j.ld[p*L : (p+1)*L] {
				a += qlat[i] * x
			}
			for i, x := range j.rd[p*R : (p+1)*R] {
				b += qr[i] * x
			}
			sc := s.Scale * (a + b)
			buf[p] = sc
			m = max(m, sc)
		}
		var sum float64
		for p := 0; p <= last; p++ {
			e := math.Exp(float64(buf[p] - m))
			buf[p] = float32(e)
			sum += e
		}
		o := j.ol[th*L : (th+1)*L]
		clear(o)
		for p := 0; p <= last; p++ {
			pw := buf[p]
			for i, x := range j.ld[p*L : (p+1)*L] {
				o[i] += pw * x
			}
		}
		inv := float32(1 / sum)
		for i := range o {
			o[i] *= inv
		}
	}
}
