package cpu

import "math"

// The chunked (WY / UT-transform) form of the gated delta rule, as
// flash-linear-attention's chunk_gated_delta_rule computes it, for prompts.
//
// Within a chunk of L tokens with state S0 at its start, write G_t for the
// cumulative log-decay (Σ_{j≤t} log g_j). Unrolling the recurrence gives
//
//	S_t = e^{G_t} S0 + Σ_{j≤t} e^{G_t−G_j} k_j u_jᵀ, with
//	u_t = β_t (v_t − e^{G_t} S0ᵀk_t − Σ_{j<t} e^{G_t−G_j} (k_t·k_j) u_j),
//
// a unit lower-triangular system (I + A) U = R for the L corrected values
// u_t, solved by forward substitution in float64 (its entries can be close
// to 1 in magnitude and it feeds every later token of the chunk). Then
//
//	y_t = e^{G_t} S0ᵀq_t + Σ_{j≤t} e^{G_t−G_j} (q_t·k_j) u_j
//	S_L = e^{G_L} S0 + Σ_j e^{G_L−G_j} k_j u_jᵀ.
//
// The work is the same as the sequential form's, but it reads S once per
// chunk instead of twice per token and its inner loops are four-term
// multiply-adds (axpy4) rather than one, which is what makes it faster.
// Every exponent is ≤ 0, so strong decay underflows to 0 (as the
// sequential form does) and never overflows.

// deltaChunk is the chunk length, flash-linear-attention's.
const deltaChunk = 64

// deltaChunkMinDefault is the prompt length from which DeltaNet uses the
// chunked form by default where the sequential form is scalar Go. Where it
// has vector kernels (decayRead, updateRead) the sequential form measured
// as fast or faster at every prompt length, 1.2–2× at 80 and 512 tokens
// (docs/benchmarks.md), so there the default is sequential.
const deltaChunkMinDefault = 8

// chunkScratch is one part's scratch for the chunked form.
type chunkScratch struct {
	p    []float32 // [2L, Dv]: rows 0..L-1 S0ᵀk_t, rows L..2L-1 S0ᵀq_t
	u    []float32 // [L, Dv] the corrected values
	u64  []float64 // [L, Dv] the same, while being solved
	kk   []float64 // [L, L] k_t·k_j
	qk   []float32 // [L, L] q_t·k_j
	kw   []float32 // [Dk, L] e^{G_L−G_j} k_j, transposed
	coef []float32 // [L]
	d    []float64 // [L, L] e^{G_t−G_j}
	g    []float64 // [L] G_t
	beta []float64 // [L]
}

func (c *chunkScratch) size(Dk, Dv int) {
	L := deltaChunk
	if len(c.p) < 2*L*Dv || len(c.kw) < Dk*L {
		*c = chunkScratch{
			p: make([]float32, 2*L*Dv), u: make([]float32, L*Dv), u64: make([]float64, L*Dv),
			kk: make([]float64, L*L), qk: make([]float32, L*L), kw: make([]float32, Dk*L),
			coef: make([]float32, L), d: make([]float64, L*L), g: make([]float64, L), beta: make([]float64, L),
		}
	}
}

// doChunked runs value heads [lo, hi) in chunks. Heads that share a key
// head share the chunk's dot products, so the chunk loop sits inside the
// key-head loop and the value heads of one key head advance together.
func (j *deltaJob) doChunked(c *chunkScratch, lo, hi int) {
	T, Hk, Dk, Hv, Dv := j.s.T, j.s.Hk, j.s.Dk, j.s.Hv, j.s.Dv
	c.size(Dk, Dv)
	rep := Hv / Hk
	for h0 := lo; h0 < hi; {
		kh := h0 / rep
		h1 := min(hi, (kh+1)*rep)
		for t0 := 0; t0 < T; t0 += deltaChunk {
			L := min(deltaChunk, T-t0)
			for t := 0; t < L; t++ {
				kt, qt := j.krow(kh, t0+t), j.qrow(kh, t0+t)
				for i := 0; i <= t; i++ {
					ki := j.krow(kh, t0+i)
					c.kk[t*L+i] = dot64(kt, ki)
					c.qk[t*L+i] = dot32(qt, ki)
				}
			}
			for h := h0; h < h1; h++ {
				j.chunk(c, h, kh, t0, L)
			}
		}
		h0 = h1
	}
}

func (j *deltaJob) qrow(kh, t int) []float32 {
	Hk, Dk := j.s.Hk, j.s.Dk
	return j.qk[(t*2*Hk+kh)*Dk : (t*2*Hk+kh+1)*Dk]
}

func (j *deltaJob) krow(kh, t int) []float32 {
	Hk, Dk := j.s.Hk, j.s.Dk
	return j.qk[(t*2*Hk+Hk+kh)*Dk : (t*2*Hk+Hk+kh+1)*Dk]
}

// chunk advances value head h (key head kh) over tokens [t0, t0+L), with
// c.kk and c.qk holding the chunk's dot products.
func (j *deltaJob) chunk(c *chunkScratch, h, kh, t0, L int) {
	Hk, Dk, Hv, Dv := j.s.Hk, j.s.Dk, j.s.Hv, j.s.Dv
	S := j.sd[h*Dk*Dv : (h+1)*Dk*Dv]
	W := j.s.QKVLen()
	// Gates: c.g[t] = G_t, c.d[t*L+i] = e^{G_t−G_i} built as a running
	// product of the g's (one exp per token, not per pair).
	decay := -math.Exp(float64(j.al[h]))
	var G float64
	for t := 0; t < L; t++ {
		lg := decay * softplus(float64(j.ad[(t0+t)*Hv+h])+float64(j.dt[h]))
		G += lg
		c.g[t] = G
		c.beta[t] = float64(sigmoid(j.bd[(t0+t)*Hv+h]))
		g := math.Exp(lg)
		for i := 0; i < t; i++ {
			c.d[t*L+i] = c.d[(t-1)*L+i] * g
		}
		c.d[t*L+t] = 1
	}
	// P = [K; Q] S0.
	for t := 0; t < L; t++ {
		matRow(c.p[t*Dv:(t+1)*Dv], j.krow(kh, t0+t), S, Dv, j.asm)
		matRow(c.p[(L+t)*Dv:(L+t+1)*Dv], j.qrow(kh, t0+t), S, Dv, j.asm)
	}
	// Solve (I + A) U = R row by row in float64.
	u64 := c.u64[:L*Dv]
	for t := 0; t < L; t++ {
		ut := u64[t*Dv : (t+1)*Dv]
		v := j.xd[(t0+t)*W+2*Hk*Dk+h*Dv : (t0+t)*W+2*Hk*Dk+(h+1)*Dv]
		eg := math.Exp(c.g[t])
		pk := c.p[t*Dv : (t+1)*Dv]
		for x := range ut {
			ut[x] = float64(v[x]) - eg*float64(pk[x])
		}
		for i := 0; i < t; i++ {
			axpy64(ut, -c.d[t*L+i]*c.kk[t*L+i], u64[i*Dv:(i+1)*Dv])
		}
		b := c.beta[t]
		for x := range ut {
			ut[x] *= b
		}
	}
	u := c.u[:L*Dv]
	for x, v := range u64 {
		u[x] = float32(v)
	}
	// Outputs.
	for t := 0; t < L; t++ {
		out := j.yd[((t0+t)*Hv+h)*Dv : ((t0+t)*Hv+h+1)*Dv]
		eg := float32(math.Exp(c.g[t]))
		pq := c.p[(L+t)*Dv : (L+t+1)*Dv]
		for x := range out {
			out[x] = eg * pq[x]
		}
		for i := 0; i <= t; i++ {
			c.coef[i] = float32(c.d[t*L+i]) * c.qk[t*L+i]
		}
		combine(out, c.coef[:t+1], u, Dv, j.asm)
	}
	// State: S = e^{G_L} S0 + Σ_j e^{G_L−G_j} k_j u_jᵀ.
	for i := 0; i < L; i++ {
		w := float32(c.d[(L-1)*L+i])
		ki := j.krow(kh, t0+i)
		for r := 0; r < Dk; r++ {
			c.kw[r*L+i] = w * ki[r]
		}
	}
	egl := float32(math.Exp(c.g[L-1]))
	for r := 0; r < Dk; r++ {
		row := S[r*Dv : (r+1)*Dv]
		for x := range row {
			row[x] *= egl
		}
		combine(row, c.kw[r*L:(r+1)*L], u, Dv, j.asm)
	}
}

// dot32 is a·b with four float32 accumulators.
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dot64 is a·b accumulated in float64 (the products are exact).
func dot64(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(a); i += 2 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return s0 + s1
}

// matRow sets dst = Σ_i w[i]·M[i] for M row-major [len(w), n].
func matRow(dst, w, M []float32, n int, asm bool) {
	clear(dst)
	combine(dst, w, M, n, asm)
}

// combine adds Σ_i c[i]·M[i] to dst, M row-major [len(c), n], four rows at
// a time so that dst is loaded and stored once per four multiply-adds;
// with asm, 8 (AVX2) or 4 (NEON) columns per instruction.
func combine(dst, c, M []float32, n int, asm bool) {
	dst = dst[:n]
	i := 0
	if asm && n%8 == 0 && n > 0 {
		for ; i+4 <= len(c); i += 4 {
			_ = M[(i+4)*n-1]
			combine4ASM(&dst[0], &M[i*n], &M[(i+1)*n], &M[(i+2)*n], &M[(i+3)*n], &c[i], n)
		}
	}
	for ; i+4 <= len(c); i += 4 {
		c0, c1, c2, c3 := c[i], c[i+1], c[i+2], c[i+3]
		m0 := M[i*n : (i+1)*n][:len(dst)]
		m1 := M[(i+1)*n : (i+2)*n][:len(dst)]
		m2 := M[(i+2)*n : (i+3)*n][:len(dst)]
		m3 := M[(i+3)*n : (i+4)*n][:len(dst)]
		for x := range dst {
			dst[x] += c0*m0[x] + c1*m1[x] + c2*m2[x] + c3*m3[x]
		}
	}
	for ; i < len(c); i++ {
		ci, m := c[i], M[i*n : (i+1)*n][:len(dst)]
		for x := range dst {
			dst[x] += ci * m[x]
		}
	}
}

// axpy64 is y += a·x in float64.
func axpy64(y []float64, a float64, x []float64) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
