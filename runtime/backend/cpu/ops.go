package cpu

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

func silu(x float32) float32    { return x / (1 + float32(math.Exp(float64(-x)))) }
func sigmoid(x float32) float32 { return 1 / (1 + float32(math.Exp(float64(-x)))) }

// parallelN runs t over [0, n) split across the threads when work (a
// rough count of multiply-adds) is large enough to pay for waking workers.
func (be *Backend) parallelN(n, work int, t task) {
	k := min(be.threads, n)
	if k <= 1 || work < 1<<15 {
		t.do(0, 0, n)
		return
	}
	be.pool.run(t, n, (n+k-1)/k)
}

// rmsScale is rsqrt(mean(x²)+eps), accumulated in float64 so the result
// does not depend on the summation order.
func rmsScale(x []float32, eps float32) float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
}

func (be *Backend) RMSNorm(y, x backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	yd, err := be.data(y, "rmsnorm y")
	if err != nil {
		return err
	}
	xd, err := be.data(x, "rmsnorm x")
	if err != nil {
		return err
	}
	if err := chk.Heads(l, min(len(xd), len(yd)), "rmsnorm"); err != nil {
		return err
	}
	var wv []float32
	if w != nil {
		if wv, err = be.vector(w, l.Dim, "rmsnorm"); err != nil {
			return err
		}
	}
	for t := 0; t < l.T; t++ {
		for h := 0; h < l.H; h++ {
			o := l.At(t, h)
			xs, ys := xd[o:o+l.Dim], yd[o:o+l.Dim]
			r := rmsScale(xs, eps)
			for i, v := range xs {
				if wv != nil {
					ys[i] = v * r * wv[i]
				} else {
					ys[i] = v * r
				}
			}
		}
	}
	return nil
}

func (be *Backend) GatedRMSNorm(y, x, z backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	yd, err := be.data(y, "gated rmsnorm y")
	if err != nil {
		return err
	}
	xd, err := be.data(x, "gated rmsnorm x")
	if err != nil {
		return err
	}
	zd, err := be.data(z, "gated rmsnorm z")
	if err != nil {
		return err
	}
	if err := chk.Heads(l, min(len(xd), len(yd), len(zd)), "gated rmsnorm"); err != nil {
		return err
	}
	wv, err := be.vector(w, l.Dim, "gated rmsnorm")
	if err != nil {
		return err
	}
	for t := 0; t < l.T; t++ {
		for h := 0; h < l.H; h++ {
			o := l.At(t, h)
			xs, ys, zs := xd[o:o+l.Dim], yd[o:o+l.Dim], zd[o:o+l.Dim]
			r := rmsScale(xs, eps)
			for i, v := range xs {
				ys[i] = v * r * wv[i] * silu(zs[i])
			}
		}
	}
	return nil
}

func (be *Backend) Rope(x backend.Buffer, l backend.Heads, rotaryDim int, theta float64, pos0 int) error {
	xd, err := be.data(x, "rope")
	if err != nil {
		return err
	}
	if err := chk.Rope(l, len(xd), rotaryDim, theta, pos0); err != nil {
		return err
	}
	half := rotaryDim / 2
	cs := grow(&be.tmp, 2*half)
	for t := 0; t < l.T; t++ {
		// Angles in float64: at long positions pos·inv_freq loses phase in f32.
		p := float64(pos0 + t)
		for i := 0; i < half; i++ {
			a := p * math.Pow(theta, -float64(2*i)/float64(rotaryDim))
			cs[i], cs[half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		for h := 0; h < l.H; h++ {
			v := xd[l.At(t, h):]
			for i := 0; i < half; i++ {
				c, s := cs[i], cs[half+i]
				a, b := v[i], v[i+half]
				v[i] = a*c - b*s
				v[i+half] = b*c + a*s
			}
		}
	}
	return nil
}

func (be *Backend) Attention(out, q, gate backend.Buffer, ql, gl backend.Heads, k, v backend.Buffer, kvHeads, pos0 int) error {
	od, err := be.data(out, "attention out")
	if err != nil {
		return err
	}
	qd, err := be.data(q, "attention q")
	if err != nil {
		return err
	}
	kd, err := be.data(k, "attention k")
	if err != nil {
		return err
	}
	vd, err := be.data(v, "attention v")
	if err != nil {
		return err
	}
	if err := chk.Heads(ql, len(qd), "attention q"); err != nil {
		return err
	}
	var gd []float32
	if gate != nil {
		if gd, err = be.data(gate, "attention gate"); err != nil {
			return err
		}
		if err := chk.AttentionGate(ql, gl, len(gd)); err != nil {
			return err
		}
	}
	if err := chk.Attention(ql, kvHeads, pos0, len(kd), len(vd), len(od)); err != nil {
		return err
	}
	T, H, D := ql.T, ql.H, ql.Dim
	n := pos0 + T
	j := &be.attn
	*j = attnJob{od: od, qd: qd, kd: kd, vd: vd, gd: gd, ql: ql, gl: gl, kvHeads: kvHeads, pos0: pos0,
		scratch: be.scratch, asm: be.isa != isaGo}
	be.parallelN(T*H, T*H*n*D, j)
	*j = attnJob{}
	return nil
}

// attnJob is Attention as a pool task over (token, head) pairs. Item i
// is token order(i/H) (see attnToken), head i%H.
type attnJob struct {
	od, qd, kd, vd, gd []float32
	ql, gl             backend.Heads
	kvHeads, pos0      int
	scratch            [][]float32
	asm                bool // dot products and sums of v by dotVec, axpyVec
}

// attnToken orders a prompt's tokens first, last, second, second-to-last,
// and so on: causal attention's cost grows with the position, so the
// pool's contiguous parts then get about the same work (in token order the
// second of two threads had three quarters of it).
func attnToken(i, T int) int {
	if i%2 == 0 {
		return i / 2
	}
	return T - 1 - i/2
}

func (j *attnJob) do(part, lo, hi int) {
	ql, gl, qd, kd, vd, od, gd, pos0 := j.ql, j.gl, j.qd, j.kd, j.vd, j.od, j.gd, j.pos0
	H, D := ql.H, ql.Dim
	kvw := j.kvHeads * D
	n := pos0 + ql.T
	group := H / j.kvHeads
	scale := float32(1 / math.Sqrt(float64(D)))
	buf := grow(&j.scratch[part], n+D)
	sc, acc := buf[:n], buf[n:]
	for th := lo; th < hi; th++ {
		t, h := attnToken(th/H, ql.T), th%H
		qv := qd[ql.At(t, h) : ql.At(t, h)+D]
		kh := h / group
		last := pos0 + t // causal: positions 0..last
		m := float32(math.Inf(-1))
		for p := 0; p <= last; p++ {
			kr := kd[p*kvw+kh*D : p*kvw+kh*D+D]
			var s float32
			if j.asm {
				s = dotVec(qv, kr)
			} else {
				for i, x := range qv {
					s += x * kr[i]
				}
			}
			s *= scale
			sc[p] = s
			m = max(m, s)
		}
		var sum float64
		for p := 0; p <= last; p++ {
			e := math.Exp(float64(sc[p] - m))
			sc[p] = float32(e)
			sum += e
		}
		clear(acc)
		for p := 0; p <= last; p++ {
			pw := sc[p]
			vr := vd[p*kvw+kh*D : p*kvw+kh*D+D]
			if j.asm {
				axpyVec(acc, vr, pw)
				continue
			}
			for i, x := range vr {
				acc[i] += pw * x
			}
		}
		inv := float32(1 / sum)
		o := od[(t*H+h)*D : (t*H+h)*D+D]
		for i := range o {
			o[i] = acc[i] * inv
		}
		if gd != nil {
			g := gd[gl.At(t, h) : gl.At(t, h)+D]
			for i := range o {
				o[i] *= sigmoid(g[i])
			}
		}
	}
}

func (be *Backend) Conv1D(y, x backend.Buffer, w backend.Tensor, state backend.Buffer, T int) error {
	yd, err := be.data(y, "conv1d y")
	if err != nil {
		return err
	}
	xd, err := be.data(x, "conv1d x")
	if err != nil {
		return err
	}
	sd, err := be.data(state, "conv1d state")
	if err != nil {
		return err
	}
	wt, err := be.tensor(w, "conv1d")
	if err != nil {
		return err
	}
	C, K := wt.w.Rows, wt.w.Cols
	if err := chk.Conv1D(C, K, T, len(xd), len(yd), len(sd)); err != nil {
		return err
	}
	wv := wt.floats()
	// in(s, c) is input step s, where steps -K+1..-1 are the state.
	in := func(s, c int) float32 {
		if s < 0 {
			return sd[(K-1+s)*C+c]
		}
		return xd[s*C+c]
	}
	// The new state (the last K-1 steps of state ++ x) is taken first, and
	// the steps are computed last to first, so y may be x itself: step t
	// overwrites only input t, which no earlier step reads.
	ns := grow(&be.tmp, (K-1)*C)
	for j := 0; j < K-1; j++ {
		s := T - (K - 1) + j
		for c := 0; c < C; c++ {
			ns[j*C+c] = in(s, c)
		}
	}
	for t := T - 1; t >= 0; t-- {
		for c := 0; c < C; c++ {
			var acc float32
			for k := 0; k < K; k++ {
				acc += wv[c*K+k] * in(t-(K-1)+k, c)
			}
			yd[t*C+c] = silu(acc)
		}
	}
	copy(sd, ns)
	return nil
}
