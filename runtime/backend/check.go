package backend

import "fmt"

// Check validates op arguments against the Backend contract. It takes
// buffer lengths rather than Buffers, so that implementations whose buffers
// differ share one set of rules and one wording: an error reads
// "<Name>: <what is wrong>", whichever backend reports it.
//
// The Max fields are an implementation's own bounds, checked where the
// contract checks would otherwise pass them; zero means none (the CPU
// backend has none).
type Check struct {
	Name string
	// MaxRows bounds the tokens, heads and rows a kernel maps to one launch
	// dimension (CUDA's gridDim.y).
	MaxRows int
	// MaxHeadDim bounds Attention's head dim, MaxConvTaps Conv1D's kernel
	// size and MaxKeyDim DeltaNet's Dk (per-thread register arrays).
	MaxHeadDim, MaxConvTaps, MaxKeyDim int
	// MaxLatent and MaxLatentRope bound LatentAttention's KVL and Rope.
	MaxLatent, MaxLatentRope int
}

func (c Check) errorf(format string, a ...any) error {
	return fmt.Errorf(c.Name+": "+format, a...)
}

// over reports whether v exceeds a bound that is set.
func over(v, bound int) bool { return bound > 0 && v > bound }

// View checks the sub-buffer [off, off+n) of a have-value buffer.
func (c Check) View(off, n, have int) error {
	if off < 0 || n < 0 || off+n > have {
		return c.errorf("view [%d, %d) of a %d-value buffer", off, off+n, have)
	}
	return nil
}

// Write checks a write of n values into a have-value buffer.
func (c Check) Write(n, have int) error {
	if n > have {
		return c.errorf("write of %d values into a %d-value buffer", n, have)
	}
	return nil
}

// Read checks a read of n values from a have-value buffer.
func (c Check) Read(n, have int) error {
	if n > have {
		return c.errorf("read of %d values from a %d-value buffer", n, have)
	}
	return nil
}

// ArgMax checks ArgMax's buffers: dst of dst values, x of n.
func (c Check) ArgMax(dst, n int) error {
	if dst < 2 {
		return c.errorf("argmax into %d values: want 2 (the index and the finiteness flag)", dst)
	}
	if n < 1 || n > MaxArgMax {
		return c.errorf("argmax over %d values: want 1 to %d", n, MaxArgMax)
	}
	return nil
}

// Copy checks that the lengths of Copy's buffers match.
func (c Check) Copy(dst, src int) error {
	if dst != src {
		return c.errorf("copy of %d values into %d", src, dst)
	}
	return nil
}

// Vector checks that a [rows, cols] weight holds the n values an
// element-wise op reads.
func (c Check) Vector(what string, rows, cols, n int) error {
	if rows*cols != n {
		return c.errorf("%s weight is [%d, %d], want %d values", what, rows, cols, n)
	}
	return nil
}

// Heads checks that l is a well-formed layout within n values.
func (c Check) Heads(l Heads, n int, what string) error {
	if l.T <= 0 || l.H <= 0 || l.Dim <= 0 || l.Off < 0 || l.RowStride < 0 || l.HeadStride < 0 {
		return c.errorf("%s: bad layout %+v", what, l)
	}
	if over(l.T, c.MaxRows) || over(l.H, c.MaxRows) {
		return c.errorf("%s: layout %+v has more than %d tokens or heads", what, l, c.MaxRows)
	}
	if s := l.Span(); s > n {
		return c.errorf("%s: layout %+v spans %d values, buffer has %d", what, l, s, n)
	}
	return nil
}

// MatMul checks y[T, rows] = x[T, cols]·wᵀ for x and y of nx and ny values.
func (c Check) MatMul(rows, cols, T, nx, ny int) error {
	if T <= 0 || over(T, c.MaxRows) || nx < T*cols || ny < T*rows {
		return c.errorf("matmul of [%d, %d] weight with T=%d: x has %d values (want %d), y %d (want %d)",
			rows, cols, T, nx, T*cols, ny, T*rows)
	}
	return nil
}

// Embed checks the rows ids of a [rows, cols] weight into ny values.
func (c Check) Embed(ids []int, rows, cols, ny int) error {
	if ny < len(ids)*cols {
		return c.errorf("embed of %d ids × %d cols into a %d-value buffer", len(ids), cols, ny)
	}
	for _, id := range ids {
		if id < 0 || id >= rows {
			return c.errorf("embed id %d out of range [0, %d)", id, rows)
		}
	}
	return nil
}

// Rope checks Rope's layout over n values and its rotation.
func (c Check) Rope(l Heads, n, rotaryDim int, theta float64, pos0 int) error {
	if err := c.Heads(l, n, "rope"); err != nil {
		return err
	}
	if rotaryDim <= 0 || rotaryDim%2 != 0 || rotaryDim > l.Dim || pos0 < 0 || !(theta > 0) {
		return c.errorf("rope: rotary dim %d of head dim %d, theta %v, pos0 %d", rotaryDim, l.Dim, theta, pos0)
	}
	return nil
}

// AttentionGate checks the gate layout gl, over n values, against q's.
func (c Check) AttentionGate(ql, gl Heads, n int) error {
	if gl.T != ql.T || gl.H != ql.H || gl.Dim != ql.Dim {
		return c.errorf("attention gate layout %+v does not match q %+v", gl, ql)
	}
	return c.Heads(gl, n, "attention gate")
}

// Attention checks the heads, the KV cache (nk and nv values) and the
// output (nout values) of Attention; q's layout is checked by Heads first.
func (c Check) Attention(ql Heads, kvHeads, pos0, nk, nv, nout int) error {
	T, H, D := ql.T, ql.H, ql.Dim
	if kvHeads <= 0 || H%kvHeads != 0 || pos0 < 0 {
		return c.errorf("attention: %d query heads over %d KV heads, pos0 %d", H, kvHeads, pos0)
	}
	if over(D, c.MaxHeadDim) {
		return c.errorf("attention head dim %d exceeds the kernel's %d", D, c.MaxHeadDim)
	}
	kvw, n := kvHeads*D, pos0+T
	if nk < n*kvw || nv < n*kvw {
		return c.errorf("attention over %d positions needs %d cache values, k has %d, v %d", n, n*kvw, nk, nv)
	}
	if nout < T*H*D {
		return c.errorf("attention out has %d values, want %d", nout, T*H*D)
	}
	return nil
}

// LatentAttention checks LatentAttention's shape against the sizes of kv_b_proj (rows×cols),
// q, the latent and rotary-key caches and out.
func (c Check) LatentAttention(s LatentShape, pos0, rows, cols, nq, nlat, nkr, nout int) error {
	if s.T <= 0 || s.H <= 0 || s.Nope <= 0 || s.Rope < 0 || s.V <= 0 || s.KVL <= 0 || pos0 < 0 {
		return c.errorf("latent attention: shape %+v, pos0 %d", s, pos0)
	}
	if over(s.KVL, c.MaxLatent) || over(s.Rope, c.MaxLatentRope) {
		return c.errorf("latent attention: latent %d and rotary key %d exceed the kernel's %d and %d", s.KVL, s.Rope, c.MaxLatent, c.MaxLatentRope)
	}
	if over(s.T, c.MaxRows) {
		return c.errorf("latent attention: %d queries exceed %d", s.T, c.MaxRows)
	}
	if rows != s.WeightRows() || cols != s.KVL {
		return c.errorf("latent attention: kv_b_proj is [%d, %d], want [%d, %d] (heads·(nope+v), kv_lora_rank)", rows, cols, s.WeightRows(), s.KVL)
	}
	n := pos0 + s.T
	switch {
	case nq < s.QLen():
		return c.errorf("latent attention q has %d values, want %d", nq, s.QLen())
	case nlat < n*s.KVL || nkr < n*s.Rope:
		return c.errorf("latent attention over %d positions needs %d latent and %d rotary-key values, has %d and %d", n, n*s.KVL, n*s.Rope, nlat, nkr)
	case nout < s.OutLen():
		return c.errorf("latent attention out has %d values, want %d", nout, s.OutLen())
	}
	return nil
}

// Conv1D checks channels×taps weights over T tokens of nx and ny values
// with a state of ns values.
func (c Check) Conv1D(channels, taps, T, nx, ny, ns int) error {
	if T <= 0 || taps < 1 || nx < T*channels || ny < T*channels || ns < (taps-1)*channels {
		return c.errorf("conv1d [%d, %d] taps, T=%d: x %d, y %d, state %d values", channels, taps, T, nx, ny, ns)
	}
	if over(taps, c.MaxConvTaps) {
		return c.errorf("conv1d kernel size %d exceeds the kernel's %d", taps, c.MaxConvTaps)
	}
	return nil
}

// DeltaNet checks the shape and the buffer lengths of DeltaNet.
func (c Check) DeltaNet(s DeltaShape, nqkv, na, nb, ny, nstate int) error {
	T, Hk, Dk, Hv, Dv := s.T, s.Hk, s.Dk, s.Hv, s.Dv
	if T <= 0 || Hk <= 0 || Dk <= 0 || Hv <= 0 || Dv <= 0 || Hv%Hk != 0 || over(T, c.MaxRows) || over(Hv, c.MaxRows) {
		return c.errorf("deltanet: bad shape %+v", s)
	}
	if over(Dk, c.MaxKeyDim) {
		return c.errorf("deltanet key head dim %d exceeds the kernel's %d", Dk, c.MaxKeyDim)
	}
	W := s.QKVLen()
	if nqkv < T*W || na < T*Hv || nb < T*Hv || ny < T*Hv*Dv || nstate < s.StateLen() {
		return c.errorf("deltanet %+v: qkv %d (want %d), a %d, b %d (want %d), y %d (want %d), state %d (want %d) values",
			s, nqkv, T*W, na, nb, T*Hv, ny, T*Hv*Dv, nstate, s.StateLen())
	}
	return nil
}

// SwiGLU checks that its three buffers have one length.
func (c Check) SwiGLU(ny, ng, nu int) error {
	if ng != ny || nu != ny {
		return c.errorf("swiglu lengths y %d, gate %d, up %d differ", ny, ng, nu)
	}
	return nil
}

// Gather checks rows of n values from nsrc into ndst values.
func (c Check) Gather(rows []int, n, ndst, nsrc int) error {
	if n <= 0 || ndst < len(rows)*n {
		return c.errorf("gather of %d rows of %d into %d values", len(rows), n, ndst)
	}
	for _, r := range rows {
		if r < 0 || (r+1)*n > nsrc {
			return c.errorf("gather row %d out of range of a %d-value buffer", r, nsrc)
		}
	}
	return nil
}

// ScatterAdd checks rows of n values (one weight each) from nsrc into
// ndst values.
func (c Check) ScatterAdd(rows []int, weights []float32, n, ndst, nsrc int) error {
	if n <= 0 || len(weights) != len(rows) || nsrc < len(rows)*n {
		return c.errorf("scatter-add of %d rows of %d (%d weights) from %d values", len(rows), n, len(weights), nsrc)
	}
	for _, r := range rows {
		if r < 0 || (r+1)*n > ndst {
			return c.errorf("scatter-add row %d out of range of a %d-value buffer", r, ndst)
		}
	}
	return nil
}

// GatedAdd checks T rows of h (nh values) against x and gate.
func (c Check) GatedAdd(T, nh, nx, ngate int) error {
	if T <= 0 || nh%T != 0 || nx < nh || ngate < T {
		return c.errorf("gated add of T=%d: h %d, x %d, gate %d values", T, nh, nx, ngate)
	}
	return nil
}

// Add checks that dst and src have one length.
func (c Check) Add(ndst, nsrc int) error {
	if ndst != nsrc {
		return c.errorf("add of %d values to %d", nsrc, ndst)
	}
	return nil
}
