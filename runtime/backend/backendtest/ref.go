package backendtest

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Plain float64 definitions of every op, written for readability, against
// which a backend's float32 results are compared.

func refMatMul(w []float64, R, C int, x []float32, T int) []float64 {
	y := make([]float64, T*R)
	for t := 0; t < T; t++ {
		for r := 0; r < R; r++ {
			var s float64
			for j := 0; j < C; j++ {
				s += w[r*C+j] * float64(x[t*C+j])
			}
			y[t*R+r] = s
		}
	}
	return y
}

func sig(x float64) float64  { return 1 / (1 + math.Exp(-x)) }
func silu(x float64) float64 { return x * sig(x) }

// refRMSNorm returns x with every vector of l normalised (other elements
// unchanged). gate, if not nil, makes it the gated norm.
func refRMSNorm(x []float32, l backend.Heads, w []float32, eps float64, gate []float32) []float64 {
	y := f64(x)
	for t := 0; t < l.T; t++ {
		for h := 0; h < l.H; h++ {
			o := l.At(t, h)
			var ss float64
			for i := 0; i < l.Dim; i++ {
				ss += float64(x[o+i]) * float64(x[o+i])
			}
			r := 1 / math.Sqrt(ss/float64(l.Dim)+eps)
			for i := 0; i < l.Dim; i++ {
				v := float64(x[o+i]) * r
				if w != nil {
					v *= float64(w[i])
				}
				if gate != nil {
					v *= silu(float64(gate[o+i]))
				}
				y[o+i] = v
			}
		}
	}
	return y
}

func refRope(x []float32, l backend.Heads, rot int, theta float64, pos0 int) []float64 {
	y := f64(x)
	half := rot / 2
	for t := 0; t < l.T; t++ {
		for h := 0; h < l.H; h++ {
			o := l.At(t, h)
			for i := 0; i < half; i++ {
				a := float64(pos0+t) / math.Pow(theta, float64(2*i)/float64(rot))
				x1, x2 := float64(x[o+i]), float64(x[o+i+half])
				y[o+i] = x1*math.Cos(a) - x2*math.Sin(a)
				y[o+i+half] = x2*math.Cos(a) + x1*math.Sin(a)
			}
		}
	}
	return y
}

// refAttention: q [T,H,D] packed, gate likewise or nil, k/v [n, kvH*D].
func refAttention(q, gate, k, v []float32, T, H, D, kvH, pos0 int) []float64 {
	out := make([]float64, T*H*D)
	for t := 0; t < T; t++ {
		for h := 0; h < H; h++ {
			kh := h / (H / kvH)
			n := pos0 + t + 1
			s := make([]float64, n)
			m := math.Inf(-1)
			for p := 0; p < n; p++ {
				for i := 0; i < D; i++ {
					s[p] += float64(q[(t*H+h)*D+i]) * float64(k[p*kvH*D+kh*D+i])
				}
				s[p] /= math.Sqrt(float64(D))
				m = math.Max(m, s[p])
			}
			var z float64
			for p := range s {
				s[p] = math.Exp(s[p] - m)
				z += s[p]
			}
			for i := 0; i < D; i++ {
				var a float64
				for p := 0; p < n; p++ {
					a += s[p] / z * float64(v[p*kvH*D+kh*D+i])
				}
				if gate != nil {
					a *= sig(float64(gate[(t*H+h)*D+i]))
				}
				out[(t*H+h)*D+i] = a
			}
		}
	}
	return out
}

// refLatent is Multi-head Latent Attention as transformers computes it, without absorption:
// each head's keys [Wk_h·lat[j] | kr[j]] and values Wv_h·lat[j] are formed, then softmax
// attention with s.Scale. w holds kv_b_proj's values, [H·(Nope+V), KVL].
func refLatent(q []float32, w []float64, lat, kr []float32, s backend.LatentShape, pos0 int) []float64 {
	out := make([]float64, s.OutLen())
	n := pos0 + s.T
	qw := s.Nope + s.Rope
	for h := 0; h < s.H; h++ {
		base := h * (s.Nope + s.V)
		key := make([][]float64, n)
		val := make([][]float64, n)
		for p := 0; p < n; p++ {
			key[p] = make([]float64, qw)
			val[p] = make([]float64, s.V)
			for r := 0; r < s.Nope+s.V; r++ {
				var a float64
				for c := 0; c < s.KVL; c++ {
					a += w[(base+r)*s.KVL+c] * float64(lat[p*s.KVL+c])
				}
				if r < s.Nope {
					key[p][r] = a
				} else {
					val[p][r-s.Nope] = a
				}
			}
			for i := 0; i < s.Rope; i++ {
				key[p][s.Nope+i] = float64(kr[p*s.Rope+i])
			}
		}
		for t := 0; t < s.T; t++ {
			qv := q[(t*s.H+h)*qw : (t*s.H+h+1)*qw]
			last := pos0 + t
			sc := make([]float64, last+1)
			m := math.Inf(-1)
			for p := 0; p <= last; p++ {
				for i, x := range qv {
					sc[p] += float64(x) * key[p][i]
				}
				sc[p] *= float64(s.Scale)
				m = math.Max(m, sc[p])
			}
			var z float64
			for p := range sc {
				sc[p] = math.Exp(sc[p] - m)
				z += sc[p]
			}
			for i := 0; i < s.V; i++ {
				var a float64
				for p := 0; p <= last; p++ {
					a += sc[p] / z * val[p][i]
				}
				out[(t*s.H+h)*s.V+i] = a
			}
		}
	}
	return out
}

// refConv runs the causal depthwise conv + SiLU over the whole sequence x
// [T, C] from a zero state; w is [C, K].
func refConv(x, w []float32, T, C, K int) []float64 {
	y := make([]float64, T*C)
	for t := 0; t < T; t++ {
		for c := 0; c < C; c++ {
			var a float64
			for k := 0; k < K; k++ {
				if s := t - (K - 1) + k; s >= 0 {
					a += float64(w[c*K+k]) * float64(x[s*C+c])
				}
			}
			y[t*C+c] = silu(a)
		}
	}
	return y
}

// refDeltaNet is transformers' torch_recurrent_gated_delta_rule with
// use_qk_l2norm_in_kernel, from a zero state, in float64.
func refDeltaNet(qkv, a, b, aLog, dtBias []float32, s backend.DeltaShape) []float64 {
	T, Hk, Dk, Hv, Dv := s.T, s.Hk, s.Dk, s.Hv, s.Dv
	W := s.QKVLen()
	S := make([]float64, Hv*Dk*Dv)
	y := make([]float64, T*Hv*Dv)
	l2 := func(v []float32) []float64 {
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		r := 1 / math.Sqrt(ss+float64(s.Eps))
		o := make([]float64, len(v))
		for i, x := range v {
			o[i] = float64(x) * r
		}
		return o
	}
	for t := 0; t < T; t++ {
		row := qkv[t*W : (t+1)*W]
		for h := 0; h < Hv; h++ {
			kh := h / (Hv / Hk)
			q := l2(row[kh*Dk : (kh+1)*Dk])
			for i := range q {
				q[i] /= math.Sqrt(float64(Dk))
			}
			k := l2(row[Hk*Dk+kh*Dk : Hk*Dk+(kh+1)*Dk])
			v := row[2*Hk*Dk+h*Dv : 2*Hk*Dk+(h+1)*Dv]
			beta := sig(float64(b[t*Hv+h]))
			sp := math.Log1p(math.Exp(float64(a[t*Hv+h]) + float64(dtBias[h])))
			g := math.Exp(-math.Exp(float64(aLog[h])) * sp)
			St := S[h*Dk*Dv : (h+1)*Dk*Dv]
			for i := range St {
				St[i] *= g
			}
			for j := 0; j < Dv; j++ {
				var mem float64
				for i := 0; i < Dk; i++ {
					mem += St[i*Dv+j] * k[i]
				}
				d := (float64(v[j]) - mem) * beta
				for i := 0; i < Dk; i++ {
					St[i*Dv+j] += k[i] * d
				}
			}
			for j := 0; j < Dv; j++ {
				var o float64
				for i := 0; i < Dk; i++ {
					o += St[i*Dv+j] * q[i]
				}
				y[(t*Hv+h)*Dv+j] = o
			}
		}
	}
	return y
}

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// relErr is ‖got − want‖ / ‖want‖ (or the absolute norm if want is 0).
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
