package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// BenchmarkMLADecode times one decode step's latent attention core of one layer at
// DeepSeek-V3-671B's shape (128 heads, nope 128, rope 64, v 128, latent 512, kv_b_proj at 4
// bits) against the context length: "expanded" is latentAttention's prompt path (kv_b_proj over
// every cached latent, the gathers into per-head keys and values, Attention, the output gather),
// "absorbed" the backend's LatentAttention. The query projections, o_proj and the rotations,
// the same in both, are left out. FMOE_BENCH-free: go test -run '^$' -bench MLADecode ./runtime/model
func BenchmarkMLADecode(b *testing.B) {
	const nh, nope, rd, vd, kvl = 128, 128, 64, 128, 512
	qkh := nope + rd
	for _, n := range []int{64, 512, 2048} {
		be := cpu.New(cpu.Options{})
		rng := rand.New(rand.NewPCG(1, 2))
		w, _ := backendtest.RandomWeight(rng, backend.Q4, nh*(nope+vd), kvl, 64)
		kvb, err := be.Register(w)
		if err != nil {
			b.Fatal(err)
		}
		rnd := func(k int) backend.Buffer {
			v := make([]float32, k)
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			buf, _ := be.Alloc(k)
			be.Write(buf, v)
			return buf
		}
		q, lat, kr := rnd(nh*qkh), rnd(n*kvl), rnd(n*rd)
		oh, _ := be.Alloc(nh * vd)
		pos := n - 1
		b.Run(fmt.Sprintf("ctx=%d/absorbed", n), func(b *testing.B) {
			s := backend.LatentShape{T: 1, H: nh, Nope: nope, Rope: rd, V: vd, KVL: kvl, Scale: float32(1 / math.Sqrt(float64(qkh)))}
			for i := 0; i < b.N; i++ {
				if err := be.LatentAttention(oh, q, kvb, lat, kr, s, pos); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("ctx=%d/expanded", n), func(b *testing.B) {
			var ms mlaScratch
			kw := nh * (nope + vd)
			kv, _ := be.Alloc(n*kw + n*rd + qkh)
			K, _ := be.Alloc(n * nh * qkh)
			V, _ := be.Alloc(n * nh * qkh)
			ao, _ := be.Alloc(nh * qkh)
			view := func(x backend.Buffer, off, k int) backend.Buffer { v, _ := be.View(x, off, k); return v }
			gk := gcd(gcd(nope, rd), vd)
			go_ := gcd(vd, qkh)
			ql := backend.Packed(1, nh, qkh)
			for i := 0; i < b.N; i++ {
				must := func(err error) {
					if err != nil {
						b.Fatal(err)
					}
				}
				must(be.MatMul(view(kv, 0, n*kw), kvb, lat, n))
				must(be.Copy(view(kv, n*kw, n*rd), kr))
				must(be.Zero(view(kv, n*kw+n*rd, gk)))
				kRows, vRows := ms.expandRows(n, nh, nope, rd, vd, gk)
				must(be.Gather(K, kv, kRows, gk))
				must(be.Gather(V, kv, vRows, gk))
				must(be.Attention(ao, q, nil, ql, ql, K, V, nh, pos))
				must(be.Gather(oh, ao, ms.outRows(1, nh, qkh, vd, go_), go_))
			}
		})
		be.Close()
	}
}
