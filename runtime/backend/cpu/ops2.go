package cpu

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// softplus matches torch.nn.functional.softplus (beta 1, threshold 20).
func softplus(x float64) float64 {
	if x > 20 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// l2scale is rsqrt(Σx²+eps), accumulated in float64.
func l2scale(x []float32, eps float32) float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return float32(1 / math.Sqrt(ss+float64(eps)))
}

func (be *Backend) DeltaNet(y, qkv, a, b backend.Buffer, aLog, dtBias backend.Tensor, state backend.Buffer, s backend.DeltaShape) error {
	yd, err := be.data(y, "deltanet y")
	if err != nil {
		return err
	}
	xd, err := be.data(qkv, "deltanet qkv")
	if err != nil {
		return err
	}
	ad, err := be.data(a, "deltanet a")
	if err != nil {
		return err
	}
	bd, err := be.data(b, "deltanet b")
	if err != nil {
		return err
	}
	sd, err := be.data(state, "deltanet state")
	if err != nil {
		return err
	}
	if err := chk.DeltaNet(s, len(xd), len(ad), len(bd), len(yd), len(sd)); err != nil {
		return err
	}
	T, Hk, Dk, Hv, Dv := s.T, s.Hk, s.Dk, s.Hv, s.Dv
	W := s.QKVLen()
	al, err := be.vector(aLog, Hv, "deltanet A_log")
	if err != nil {
		return err
	}
	dt, err := be.vector(dtBias, Hv, "deltanet dt_bias")
	if err != nil {
		return err
	}
	// Normalise q and k of every token once (not once per value head).
	j := &be.delta
	qk := grow(&j.qk, T*2*Hk*Dk)
	qscale := float32(1 / math.Sqrt(float64(Dk)))
	for t := 0; t < T; t++ {
		for h := 0; h < 2*Hk; h++ {
			src := xd[t*W+h*Dk : t*W+(h+1)*Dk]
			dst := qk[(t*2*Hk+h)*Dk : (t*2*Hk+h+1)*Dk]
			r := l2scale(src, s.Eps)
			if h < Hk {
				r *= qscale
			}
			for i, v := range src {
				dst[i] = v * r
			}
		}
	}
	chunked := be.deltaChunkMin > 0 && T >= be.deltaChunkMin
	if chunked && len(j.cs) < be.threads {
		j.cs = make([]chunkScratch, be.threads)
	}
	*j = deltaJob{s: s, qk: j.qk, cs: j.cs, chunked: chunked, asm: deltaAsm(be.isa), yd: yd, xd: xd, ad: ad, bd: bd, sd: sd, al: al, dt: dt, scratch: be.scratch}
	be.parallelN(Hv, T*Hv*Dk*Dv*4, j)
	*j = deltaJob{qk: j.qk, cs: j.cs}
	return nil
}

// deltaJob is DeltaNet as a pool task over value heads; qk (the normalised
// q and k) and cs (the chunked form's per-part scratch) are kept between
// calls.
type deltaJob struct {
	s                              backend.DeltaShape
	qk, yd, xd, ad, bd, sd, al, dt []float32
	scratch                        [][]float32
	chunked, asm                   bool
	cs                             []chunkScratch
}

func (j *deltaJob) do(part, lo, hi int) {
	if j.chunked {
		j.doChunked(&j.cs[part], lo, hi)
		return
	}
	T, Hk, Dk, Hv, Dv := j.s.T, j.s.Hk, j.s.Dk, j.s.Hv, j.s.Dv
	W := j.s.QKVLen()
	qk, xd, yd, ad, bd, al, dt := j.qk, j.xd, j.yd, j.ad, j.bd, j.al, j.dt
	rep := Hv / Hk
	mem := grow(&j.scratch[part], Dv)
	for h := lo; h < hi; h++ {
		S := j.sd[h*Dk*Dv : (h+1)*Dk*Dv]
		kh := h / rep
		for t := 0; t < T; t++ {
			qv := qk[(t*2*Hk+kh)*Dk : (t*2*Hk+kh+1)*Dk]
			kv := qk[(t*2*Hk+Hk+kh)*Dk : (t*2*Hk+Hk+kh+1)*Dk]
			vv := xd[t*W+2*Hk*Dk+h*Dv : t*W+2*Hk*Dk+(h+1)*Dv]
			beta := sigmoid(bd[t*Hv+h])
			g := float32(math.Exp(-math.Exp(float64(al[h])) * softplus(float64(ad[t*Hv+h])+float64(dt[h]))))
			// Pass 1: decay S and read kv_mem = Sᵀk.
			clear(mem)
			for i := 0; i < Dk; i++ {
				row := S[i*Dv : (i+1)*Dv]
				ki := kv[i]
				if j.asm {
					decayRead(row, mem, g, ki)
					continue
				}
				for j := range row {
					row[j] *= g
					mem[j] += row[j] * ki
				}
			}
			for j := range mem {
				mem[j] = (vv[j] - mem[j]) * beta
			}
			// Pass 2: rank-1 update and read out y = Sᵀq with the new S.
			out := yd[(t*Hv+h)*Dv : (t*Hv+h+1)*Dv]
			clear(out)
			for i := 0; i < Dk; i++ {
				row := S[i*Dv : (i+1)*Dv]
				ki, qi := kv[i], qv[i]
				if j.asm {
					updateRead(row, mem, out, ki, qi)
					continue
				}
				for j := range row {
					row[j] += ki * mem[j]
					out[j] += row[j] * qi
				}
			}
		}
	}
}

func (be *Backend) SwiGLU(y, g, u backend.Buffer) error {
	yd, err := be.data(y, "swiglu y")
	if err != nil {
		return err
	}
	gd, err := be.data(g, "swiglu gate")
	if err != nil {
		return err
	}
	ud, err := be.data(u, "swiglu up")
	if err != nil {
		return err
	}
	if err := chk.SwiGLU(len(yd), len(gd), len(ud)); err != nil {
		return err
	}
	j := &be.swiglu
	*j = swigluJob{yd: yd, gd: gd, ud: ud}
	// An exp costs about swigluWork multiply-adds: a batch of experts'
	// rows (a decode step's K × I, the CPU share's) is spread over the
	// threads, one expert's 1,024 stays on the caller.
	be.parallelN(len(gd), len(gd)*swigluWork, j)
	*j = swigluJob{}
	return nil
}

const swigluWork = 16

// swigluJob is SwiGLU as a pool task over value ranges: each value is
// computed alone, so the split does not change a bit.
type swigluJob struct{ yd, gd, ud []float32 }

func (j *swigluJob) do(_, lo, hi int) {
	ud, yd := j.ud[lo:hi], j.yd[lo:hi]
	for i, v := range j.gd[lo:hi] {
		yd[i] = silu(v) * ud[i]
	}
}

func (be *Backend) Gather(dst, src backend.Buffer, rows []int, n int) error {
	dd, err := be.data(dst, "gather dst")
	if err != nil {
		return err
	}
	sd, err := be.data(src, "gather src")
	if err != nil {
		return err
	}
	if err := chk.Gather(rows, n, len(dd), len(sd)); err != nil {
		return err
	}
	for i, r := range rows {
		copy(dd[i*n:(i+1)*n], sd[r*n:(r+1)*n])
	}
	return nil
}

func (be *Backend) ScatterAdd(dst, src backend.Buffer, rows []int, weights []float32, n int) error {
	dd, err := be.data(dst, "scatter dst")
	if err != nil {
		return err
	}
	sd, err := be.data(src, "scatter src")
	if err != nil {
		return err
	}
	if err := chk.ScatterAdd(rows, weights, n, len(dd), len(sd)); err != nil {
		return err
	}
	for i, r := range rows {
		d, s, w := dd[r*n:(r+1)*n], sd[i*n:(i+1)*n], weights[i]
		for j, v := range s {
			d[j] += w * v
		}
	}
	return nil
}

func (be *Backend) GatedAdd(h, x, gate backend.Buffer, T int) error {
	hd, err := be.data(h, "gated add h")
	if err != nil {
		return err
	}
	xd, err := be.data(x, "gated add x")
	if err != nil {
		return err
	}
	gd, err := be.data(gate, "gated add gate")
	if err != nil {
		return err
	}
	if err := chk.GatedAdd(T, len(hd), len(xd), len(gd)); err != nil {
		return err
	}
	n := len(hd) / T
	for t := 0; t < T; t++ {
		g := sigmoid(gd[t])
		d, s := hd[t*n:(t+1)*n], xd[t*n:(t+1)*n]
		for j, v := range s {
			d[j] += g * v
		}
	}
	return nil
}

func (be *Backend) Add(dst, src backend.Buffer) error {
	dd, err := be.data(dst, "add dst")
	if err != nil {
		return err
	}
	sd, err := be.data(src, "add src")
	if err != nil {
		return err
	}
	if err := chk.Add(len(dd), len(sd)); err != nil {
		return err
	}
	for i, v := range sd {
		dd[i] += v
	}
	return nil
}
