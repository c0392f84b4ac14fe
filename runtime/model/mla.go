package model

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Multi-head Latent Attention (DeepSeek-V3, Kimi-K2) on the backend ops every backend has.
//
// The cache of a layer stores per position what MLA is designed to keep: the normed latent
// (kv_lora_rank values, layerState.k) and the rotated key shared by every head
// (qk_rope_head_dim, layerState.v) — 576 float32 values, 2,304 bytes, per position and layer
// for DeepSeek-V3-671B as its published config sizes it (61 layers: 141 KB per token; the
// ~70 KB usually quoted is the same cache in bf16), where plain attention would keep 128 heads × (192 + 128) values.
//
// A step of at most mlaAbsorbMaxT tokens (decode) runs the backend's LatentAttention, which
// absorbs kv_b_proj into the query and the output as the DeepSeek-V2 paper describes: each
// head's query is taken into the latent space by its key block, attention runs over the
// cached latents and rotary keys themselves, and each head's latent output is taken out by its
// value block. Per token and layer that is 2·heads·(nope·kvl + v·kvl) multiply-adds for the
// absorptions (16.8 M for the 671B) plus (pos+T)·heads·(2·kvl + rope) for the attention
// (139 K per cached position), and no scratch that grows with the context.
//
// A longer step (a prompt) whose context pos+T is at most Options.MLAExpandedMax up-projects the cache instead, positions [0, pos+T), to per-head
// keys and values with kv_b_proj (one MatMul over the cached rows) and runs the ordinary
// Attention op on them: (pos+T)·heads·(nope+v)·kvl multiply-adds (16.8 M per cached position)
// once per step rather than per token, and (pos+T)·(heads·(2·qk_head + nope + v) + rope)·4
// bytes of scratch (328 KB per cached position). Per step the absorbed form costs
// T·16.8 M + T·(pos+T)·139 K against (pos+T)·(16.8 M + T·41 K) expanded (41 K =
// heads·(qk_head + v)): absorbing wins while T is below about 16.8 M / (139 K - 41 K) ≈ 170.
// Both are transformers' attention in another order of sums; the goldens pass either way.

// Rotary: the backend's Rope turns pair i by pos·theta^(-2i/d), which cannot express YaRN's
// blended frequencies. The rotation is instead a matrix per position ([qk_head, qk_head] for
// the query, which also applies the softmax scale's excess over 1/sqrt(qk_head), and
// [rope, rope] for the key), bound for the step and applied by MatMul to the heads of that
// position's row: qk_head² multiply-adds per head and token (12% of q_b_proj's for the 671B).

// mlaScratch is one session's MLA work space, grown as needed (shared by the layers).
type mlaScratch struct {
	n, ctx                 int // tokens and context positions (expanded keys and values) the buffers hold
	qa, q, qs, ckv, ao, oh backend.Buffer
	kv, k, v               backend.Buffer // [ctx·heads·(nope+v) | ctx·rope | zeros], expanded K and V

	rope     *mlaRope
	qRot     [][]byte         // per position: [qk_head, qk_head] float32
	kRot     [][]byte         // per position: [rope, rope] float32
	bound    []backend.Tensor // qRot then kRot, bound
	boundPos int              // the first position they are for
	latRows  []int            // Gather rows, cached by size
	latT     int              //
	kvRows   [2][]int         // K and V
	kvN      int              //
	oRows    []int            //
	oT       int              //
	wbuf     []float32        //
}

// MLAExpandedDefault is Options.MLAExpandedMax's default: 8,192 positions of expanded keys and
// values, 2.7 GB of scratch at the 671B's shape (327,936 bytes a position, mlaScratchBytes),
// where the whole default context (163,840) would take 53.7 GB. A prompt step past it runs the
// absorbed form: 139 K·T against 41 K·T + 16.8 M multiply-adds per cached position by the
// costs above, 1.9x the expanded form's at T = 512, but only for a prompt's steps past 8,192.
const MLAExpandedDefault = 8192

// mlaAbsorbMaxT is the longest step that runs the absorbed LatentAttention (see above: the
// expanded form is cheaper from about 170 tokens, and a prompt chunk is up to 512).
const mlaAbsorbMaxT = 64

// ensure sizes the buffers for T tokens and, when expand, for the expanded keys and values of
// n positions.
func (ms *mlaScratch) ensure(s *Session, T, n int, expand bool) error {
	if T <= ms.n && (!expand || n <= ms.ctx) {
		return nil
	}
	c := &s.m.Config
	m := c.MLA
	nh, qkh := c.NumAttentionHeads, c.HeadDim
	// The context doubles, so that long prompts reallocate O(log n) times.
	switch {
	case !expand:
		n = ms.ctx
	case n > ms.ctx:
		n = min(max(n, 2*ms.ctx), max(min(s.m.maxCtx, s.m.mlaExpand), n))
	default:
		n = ms.ctx
	}
	T = max(T, ms.n)
	sizes := []struct {
		b *backend.Buffer
		n int
	}{
		{&ms.qa, T * max(m.QLoraRank, 1)}, {&ms.q, T * nh * qkh}, {&ms.qs, T * nh * qkh},
		{&ms.ckv, T * (m.KVLoraRank + m.QKRopeHeadDim)}, {&ms.ao, T * nh * qkh}, {&ms.oh, T * nh * m.VHeadDim},
	}
	if n > 0 {
		sizes = append(sizes, []struct {
			b *backend.Buffer
			n int
		}{{&ms.kv, n*nh*(m.QKNopeHeadDim+m.VHeadDim) + n*m.QKRopeHeadDim + qkh}, {&ms.k, n * nh * qkh}, {&ms.v, n * nh * qkh}}...)
	}
	// Freed, not left to the garbage collector, which does not see device memory.
	if err := ms.free(s.m.be); err != nil {
		return err
	}
	for _, sz := range sizes {
		b, err := s.m.be.Alloc(sz.n)
		if err != nil {
			return err
		}
		*sz.b = b
	}
	ms.n, ms.ctx = T, n
	return nil
}

// free releases the buffers (ensure then allocates afresh).
func (ms *mlaScratch) free(be backend.Backend) error {
	var errs []error
	for _, b := range []*backend.Buffer{&ms.qa, &ms.q, &ms.qs, &ms.ckv, &ms.ao, &ms.oh, &ms.kv, &ms.k, &ms.v} {
		if *b != nil {
			errs = append(errs, be.Free(*b))
			*b = nil
		}
	}
	ms.n, ms.ctx = 0, 0
	return errors.Join(errs...)
}

// close frees the buffers and releases the rotations (Session.Close).
func (ms *mlaScratch) close(be backend.Backend) error {
	return errors.Join(ms.free(be), ms.release(be))
}

// mlaScratchBytes is the device memory of a session's MLA work space at the model's context and
// prefill chunk (0 for the other families): mostly the keys and values the expanded form makes,
// for at most mlaExpand positions, and the 2·T·heads·kv_lora_rank values a GPU's
// LatentAttention takes for a prompt step beyond them.
func mlaScratchBytes(m *Model) int64 {
	c := &m.Config
	ml := c.MLA
	if ml == nil {
		return 0
	}
	nh, qkh, T, n := int64(c.NumAttentionHeads), int64(c.HeadDim), int64(m.chunk), int64(min(m.maxCtx, m.mlaExpand))
	perTok := int64(max(ml.QLoraRank, 1)) + 3*nh*qkh + int64(ml.KVLoraRank+ml.QKRopeHeadDim) + nh*int64(ml.VHeadDim)
	perPos := nh*int64(ml.QKNopeHeadDim+ml.VHeadDim) + int64(ml.QKRopeHeadDim) + 2*nh*qkh
	rot := qkh*qkh + int64(ml.QKRopeHeadDim*ml.QKRopeHeadDim) // the bound rotations, per token
	absorbed := 2 * nh * int64(ml.KVLoraRank)                 // LatentAttention's device scratch, per token
	return (T*(perTok+rot+absorbed) + n*perPos + qkh) * 4
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// latentAttention is the latent-attention mixer; it adds its output to h.
func (s *Session) latentAttention(r *run, L *layer, st *layerState, xn, h backend.Buffer, T int) {
	m := s.m
	c := &m.Config
	be := m.be
	a, ml, ms := L.mla, c.MLA, &s.mla
	nh, qkh, nope, rd, vd, kvl := c.NumAttentionHeads, c.HeadDim, ml.QKNopeHeadDim, ml.QKRopeHeadDim, ml.VHeadDim, ml.KVLoraRank
	n := s.pos + T
	r.do(s.growKV(st, n))
	if r.err != nil {
		return
	}
	// Past mlaExpand positions the expanded keys and values would outgrow their budget; the
	// absorbed op takes a step of any length (causal within it), only more slowly.
	absorb := T <= mlaAbsorbMaxT || n > m.mlaExpand
	if absorb && T > mlaAbsorbMaxT {
		m.mlaCapped++
	}
	r.do(ms.ensure(s, T, n, !absorb))
	if r.err != nil {
		return
	}
	r.do(s.mlaRotations(T))
	if r.err != nil {
		return
	}
	qRot, kRot := ms.bound[:T], ms.bound[T:]

	// Query: q_b_proj(q_a_layernorm(q_a_proj(x))) or q_proj(x), then per position the
	// rotation (and scale) of its heads.
	q := r.view(ms.q, 0, T*nh*qkh)
	if a.qa != nil {
		qa := r.view(ms.qa, 0, T*ml.QLoraRank)
		r.do(be.MatMul(qa, a.qa, xn, T))
		r.do(be.RMSNorm(qa, qa, backend.Rows(T, ml.QLoraRank), a.qaNorm, 1e-6)) // DeepseekV3RMSNorm's default eps
		r.do(be.MatMul(q, a.qb, qa, T))
	} else {
		r.do(be.MatMul(q, a.qb, xn, T))
	}
	qs := r.view(ms.qs, 0, T*nh*qkh)
	for t := 0; t < T; t++ {
		r.do(be.MatMul(r.view(qs, t*nh*qkh, nh*qkh), qRot[t], r.view(q, t*nh*qkh, nh*qkh), nh))
	}

	// The latent (normed) and the rotated shared key go into the cache rows of their positions.
	W := kvl + rd
	ckv := r.view(ms.ckv, 0, T*W)
	r.do(be.MatMul(ckv, a.kva, xn, T))
	r.do(be.RMSNorm(ckv, ckv, backend.Heads{T: T, H: 1, Dim: kvl, RowStride: W, HeadStride: W}, a.kvaNorm, 1e-6))
	gl := gcd(kvl, rd)
	r.do(be.Gather(r.view(st.k, s.pos*kvl, T*kvl), ckv, ms.latentRows(T, kvl, rd, gl), gl))
	for t := 0; t < T; t++ {
		r.do(be.MatMul(r.view(st.v, (s.pos+t)*rd, rd), kRot[t], r.view(ckv, t*W+kvl, rd), 1))
	}

	if absorb {
		oh := r.view(ms.oh, 0, T*nh*vd)
		ls := backend.LatentShape{T: T, H: nh, Nope: nope, Rope: rd, V: vd, KVL: kvl, Scale: float32(1 / math.Sqrt(float64(qkh)))}
		r.do(be.LatentAttention(oh, qs, a.kvb, r.view(st.k, 0, n*kvl), r.view(st.v, 0, n*rd), ls, s.pos))
		s.mlaOut(r, L, oh, h, T)
		return
	}

	// Keys and values of every cached position: kv_b_proj of the latents, beside the shared
	// rotated keys and a zero block, gathered into [n, heads, qk_head] (values zero-padded).
	kw := nh * (nope + vd)
	kvb := r.view(ms.kv, 0, n*kw)
	r.do(be.MatMul(kvb, a.kvb, r.view(st.k, 0, n*kvl), n))
	r.do(be.Copy(r.view(ms.kv, n*kw, n*rd), r.view(st.v, 0, n*rd)))
	gk := gcd(gcd(nope, rd), vd)
	r.do(be.Zero(r.view(ms.kv, n*kw+n*rd, gk)))
	kRows, vRows := ms.expandRows(n, nh, nope, rd, vd, gk)
	K, V := r.view(ms.k, 0, n*nh*qkh), r.view(ms.v, 0, n*nh*qkh)
	r.do(be.Gather(K, ms.kv, kRows, gk))
	r.do(be.Gather(V, ms.kv, vRows, gk))

	ql := backend.Packed(T, nh, qkh)
	ao := r.view(ms.ao, 0, T*nh*qkh)
	r.do(be.Attention(ao, qs, nil, ql, ql, K, V, nh, s.pos))
	// Drop the padding of each head's output, then o_proj.
	go_ := gcd(vd, qkh)
	oh := r.view(ms.oh, 0, T*nh*vd)
	r.do(be.Gather(oh, ao, ms.outRows(T, nh, qkh, vd, go_), go_))
	s.mlaOut(r, L, oh, h, T)
}

// mlaOut adds o_proj of the heads' outputs oh [T, heads·v_head] to h.
func (s *Session) mlaOut(r *run, L *layer, oh, h backend.Buffer, T int) {
	o := r.view(s.sc.o, 0, T*s.m.Config.HiddenSize)
	r.do(s.m.be.MatMul(o, L.o, oh, T))
	s.residual(r, h, o)
}

// mlaRotations binds the rotation matrices of positions [pos, pos+T) to ms.bound (the query's,
// then the key's) unless they are bound already: once per step, for all the layers, and kept
// until the positions change or the session closes. A matrix depends on its position only.
func (s *Session) mlaRotations(T int) error {
	ms, c := &s.mla, &s.m.Config
	if ms.boundPos == s.pos && len(ms.bound) == 2*T {
		return nil
	}
	if err := ms.release(s.m.be); err != nil {
		return err
	}
	qkh, rd := c.HeadDim, c.MLA.QKRopeHeadDim
	if ms.rope == nil {
		rope := newMLARope(c)
		ms.rope = &rope
	}
	ms.qRot, ms.kRot = ms.qRot[:0], ms.kRot[:0]
	alpha := ms.rope.scale * math.Sqrt(float64(qkh)) // Attention scales by 1/sqrt(qk_head)
	for t := 0; t < T; t++ {
		ms.qRot = append(ms.qRot, ms.matrix(qkh, func(w []float32) { ms.rope.rotation(w, qkh-rd, s.pos+t, alpha) }))
		ms.kRot = append(ms.kRot, ms.matrix(rd, func(w []float32) { ms.rope.rotation(w, 0, s.pos+t, 1) }))
	}
	for i, b := range append(append([][]byte(nil), ms.qRot...), ms.kRot...) {
		n := qkh
		if i >= T {
			n = rd
		}
		t, err := s.m.be.Bind(backend.Weight{Format: backend.F32, Rows: n, Cols: n, Data: b})
		if err != nil {
			return errors.Join(err, ms.release(s.m.be))
		}
		ms.bound = append(ms.bound, t)
	}
	ms.boundPos = s.pos
	return nil
}

// release ends the Binds of the rotation matrices.
func (ms *mlaScratch) release(be backend.Backend) error {
	var errs []error
	for _, t := range ms.bound {
		errs = append(errs, be.Release(t))
	}
	ms.bound = ms.bound[:0]
	return errors.Join(errs...)
}

// matrix fills an [n, n] float32 matrix and returns its little-endian bytes.
func (ms *mlaScratch) matrix(n int, fill func([]float32)) []byte {
	if len(ms.wbuf) < n*n {
		ms.wbuf = make([]float32, n*n)
	}
	w := ms.wbuf[:n*n]
	fill(w)
	b := make([]byte, 4*n*n)
	for i, v := range w {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// latentRows are the Gather rows (of g values) that copy the latent part of T rows of
// [kvl | rd] into T rows of kvl.
func (ms *mlaScratch) latentRows(T, kvl, rd, g int) []int {
	if ms.latT != T || ms.latRows == nil {
		ms.latRows = ms.latRows[:0]
		for t := 0; t < T; t++ {
			for j := 0; j < kvl; j += g {
				ms.latRows = append(ms.latRows, (t*(kvl+rd)+j)/g)
			}
		}
		ms.latT = T
	}
	return ms.latRows
}

// expandRows are the Gather rows (of g values) that build K and V, [n, heads, nope+rd], from
// ms.kv: each head's key is its kv_b_proj key then the shared rotated key, its value its
// kv_b_proj value then zeros.
func (ms *mlaScratch) expandRows(n, nh, nope, rd, vd, g int) (k, v []int) {
	if ms.kvN == n && ms.kvRows[0] != nil {
		return ms.kvRows[0], ms.kvRows[1]
	}
	kw := nh * (nope + vd)
	zero := (n*kw + n*rd) / g
	k, v = ms.kvRows[0][:0], ms.kvRows[1][:0]
	for p := 0; p < n; p++ {
		for h := 0; h < nh; h++ {
			base := p*kw + h*(nope+vd)
			for j := 0; j < nope; j += g {
				k = append(k, (base+j)/g)
			}
			for j := 0; j < rd; j += g {
				k = append(k, (n*kw+p*rd+j)/g)
			}
			for j := 0; j < vd; j += g {
				v = append(v, (base+nope+j)/g)
			}
			for j := vd; j < nope+rd; j += g {
				v = append(v, zero)
			}
		}
	}
	ms.kvRows, ms.kvN = [2][]int{k, v}, n
	return k, v
}

// outRows are the Gather rows (of g values) that keep the first vd values of each qkh-wide
// head output.
func (ms *mlaScratch) outRows(T, nh, qkh, vd, g int) []int {
	if ms.oT != T || ms.oRows == nil {
		ms.oRows = ms.oRows[:0]
		for th := 0; th < T*nh; th++ {
			for j := 0; j < vd; j += g {
				ms.oRows = append(ms.oRows, (th*qkh+j)/g)
			}
		}
		ms.oT = T
	}
	return ms.oRows
}
