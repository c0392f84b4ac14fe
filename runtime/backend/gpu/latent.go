package gpu

import "github.com/fmoe/fmoe/runtime/backend"

// LatentAttention is Multi-head Latent Attention with kv_b_proj absorbed (backend.Backend):
// three launches of latent.h over device scratch of 2·T·H·KVL values (the queries in latent
// space, then the heads' latent outputs). kv_b_proj is read where it lies, in its own format,
// through dequant_elem: its key rows by the query kernel, its value rows by the output kernel.
func (o *Ops[A]) LatentAttention(out, q backend.Buffer, wkv backend.Tensor, lat, kr backend.Buffer, s backend.LatentShape, pos0 int) error {
	t, err := o.dev.Weight(wkv, "latent attention kv_b_proj")
	if err != nil {
		return err
	}
	var p [4]A // out, q, lat, kr
	var n [4]int
	if err := o.buffers(p[:], n[:], []string{"latent attention out", "latent attention q", "latent attention latents", "latent attention rotary keys"},
		out, q, lat, kr); err != nil {
		return err
	}
	if err := o.chk.LatentAttention(s, pos0, t.Rows, t.Cols, n[1], n[2], n[3], n[0]); err != nil {
		return err
	}
	T, H, L, qw := s.T, s.H, s.KVL, s.Nope+s.Rope
	scr, err := o.dev.Scratch(2 * T * H * L)
	if err != nil {
		return err
	}
	k := o.launch(kMLAQ, H, T, o.lim.threads(kMLAQ, min(256, (L+31)&^31)), 0)
	k.ptr(t.Data).ptr(t.Scales).ptr(t.Biases).ptr(p[1]).ptr(scr).i32(H).i32(s.Nope).i32(qw).i32(s.V).i32(L).i32(t.Group).i32(int(t.Format))
	if err := o.dev.Launch(k); err != nil {
		return err
	}
	warps := o.lim.warps(kMLAAttention, min(latMaxWarps, max(1, (pos0+T+15)/16)))
	k = o.launch(kMLAAttention, H, T, 32*warps, 0)
	k.ptrAt(scr, T*H*L).ptr(scr).ptr(p[1]).ptr(p[2]).ptr(p[3]).i32(H).i32(L).i32(s.Rope).i32(qw).i32(s.Nope).i32(pos0).f32(s.Scale)
	if err := o.dev.Launch(k); err != nil {
		return err
	}
	k = o.launch(kMLAO, H*s.V, T, 32, 0)
	k.ptr(t.Data).ptr(t.Scales).ptr(t.Biases).ptrAt(scr, T*H*L).ptr(p[0]).i32(H).i32(s.Nope).i32(s.V).i32(L).i32(t.Group).i32(int(t.Format))
	return o.dev.Launch(k)
}
