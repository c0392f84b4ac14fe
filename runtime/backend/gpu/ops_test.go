package gpu

import (
	"fmt"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The conformance suites run these plans for real (CUDA on a GPU, Metal on
// its simulator); these tests pin what each Limits field changes.

type tbuf struct{ n int }

func (b *tbuf) Len() int { return b.n }

type tten struct{ w Weight[int] }

func (t *tten) Rows() int              { return t.w.Rows }
func (t *tten) Cols() int              { return t.w.Cols }
func (t *tten) Format() backend.Format { return t.w.Format }

// recorder is a Device whose addresses are ints and whose launches are
// kept as text.
type recorder struct{ got []string }

func (r *recorder) Buffer(b backend.Buffer, what string) (int, int, error) {
	return 1000, b.Len(), nil
}
func (r *recorder) Weight(t backend.Tensor, what string) (Weight[int], error) {
	return t.(*tten).w, nil
}
func (r *recorder) Vector(t backend.Tensor, n int, what string) (int, error) { return 2000, nil }
func (r *recorder) Stage(parts ...[]byte) ([]int, error)                     { return make([]int, len(parts)), nil }
func (r *recorder) Scratch(n int) (int, error)                               { return 3000, nil }
func (r *recorder) RopeTable(RopeKey, func() []float32) (int, error)         { return 4000, nil }
func (r *recorder) Launch(l *Launch[int]) error {
	r.got = append(r.got, fmt.Sprintf("%v %v %d %d", l.Kernel, l.Grid, l.Threads, l.Shared))
	return nil
}

func plans(lim Limits, op func(*Ops[int]) error) ([]string, error) {
	r := &recorder{}
	o := NewOps[int]("test", r, &lim, 0)
	err := op(&o)
	return r.got, err
}

func TestMatvecLimits(t *testing.T) {
	w := &tten{Weight[int]{Rows: 4096, Cols: 4096, Group: 64, Format: backend.Q4}}
	mm := func(o *Ops[int]) error { return o.MatMul(&tbuf{1 << 20}, w, &tbuf{1 << 20}, 6) }
	for _, c := range []struct {
		name string
		lim  Limits
		want string
	}{
		// CUDA-like: 99 KiB fits four tokens of x; 256 row groups leave
		// 132 SMs short of two 8-warp blocks each, so blocks have 4 warps.
		{"cuda", Limits{MaxGridY: 65535, MaxShared: 99 << 10, SMs: 132, MatvecBlocks: 528},
			"[matvec_q4_t4 [512 1] 128 75776 matvec_q4_t1 [512 2] 128 18944]"},
		// Few SMs per row group: 8 warps; blocks bounded by MatvecBlocks.
		{"few SMs", Limits{MaxShared: 99 << 10, SMs: 1, MatvecBlocks: 3},
			"[matvec_q4_t4 [3 1] 256 75776 matvec_q4_t1 [3 2] 256 18944]"},
		// One row per warp, 16 warps asked: 256 blocks of 16 rows leave
		// SMs short, so 8 warps (512 blocks of 8 rows).
		{"nr1 warps16", Limits{MaxShared: 99 << 10, SMs: 132, MatvecBlocks: 528, MatvecRows: 1, MatvecWarps: 16},
			"[matvec_q4_t4 [512 1] 256 75776 matvec_q4_t1 [512 2] 256 18944]"},
		// Four rows per warp, 16 warps, enough blocks per SM: as asked.
		{"nr4 warps16", Limits{MaxShared: 99 << 10, SMs: 1, MatvecBlocks: 3, MatvecRows: 4, MatvecWarps: 16},
			"[matvec_q4_t4 [3 1] 512 75776 matvec_q4_t1 [3 2] 512 18944]"},
		// Metal-like: pipelines of 128 threads give 4 warps; 32 KiB keeps
		// four tokens out.
		{"metal", Limits{MaxShared: 32 << 10, SharedAlign: 16, DataAlign: 16, MatvecBlocks: 320,
			MaxThreads: func(Kernel) int { return 128 }},
			"[matvec_q4_t1 [320 6] 128 18944]"},
		// A misaligned weight, or x too wide for shared memory, falls back.
		{"tiny shared", Limits{MaxShared: 4 << 10, MatvecBlocks: 8}, "[matvec_generic [4096 6] 32 0]"},
	} {
		got, err := plans(c.lim, mm)
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("%s: got %v, %v; want %s", c.name, got, err, c.want)
		}
	}
	w.w.DataOff = 4
	got, _ := plans(Limits{MaxShared: 32 << 10, DataAlign: 16, MatvecBlocks: 8}, mm)
	if want := "[matvec_generic [4096 6] 32 0]"; fmt.Sprint(got) != want {
		t.Errorf("misaligned data: got %v, want %s", got, want)
	}
}

func TestGridYLimit(t *testing.T) {
	w := &tten{Weight[int]{Rows: 200000, Cols: 8, Format: backend.F32}}
	ids := make([]int, 140000)
	embed := func(o *Ops[int]) error { return o.Embed(&tbuf{1 << 24}, w, ids) }
	got, _ := plans(Limits{MaxGridY: 65535}, embed)
	if want := "[dequant [1 65535] 256 0 dequant [1 65535] 256 0 dequant [1 8930] 256 0]"; fmt.Sprint(got) != want {
		t.Errorf("chunked: got %v, want %s", got, want)
	}
	got, _ = plans(Limits{}, embed)
	if want := "[dequant [1 140000] 256 0]"; fmt.Sprint(got) != want {
		t.Errorf("unbounded: got %v, want %s", got, want)
	}
	_, err := plans(Limits{MaxGridY: 65535}, func(o *Ops[int]) error {
		return o.RMSNorm(&tbuf{1 << 24}, &tbuf{1 << 24}, backend.Rows(70000, 4), nil, 1e-6)
	})
	if want := "test: rmsnorm: layout {T:70000 H:1 Dim:4 RowStride:4 HeadStride:4 Off:0} has more than 65535 tokens or heads"; fmt.Sprint(err) != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestPipelineThreads(t *testing.T) {
	s := backend.DeltaShape{T: 1, Hk: 1, Dk: 256, Hv: 1, Dv: 32, Eps: 1e-6}
	b := &tbuf{1 << 20}
	dn := func(o *Ops[int]) error { return o.DeltaNet(b, b, b, b, &tten{}, &tten{}, b, s) }
	got, err := plans(Limits{}, dn)
	if want := "[delta_prep [2 1] 32 0 delta_step [1 1] 256 0]"; err != nil || fmt.Sprint(got) != want {
		t.Errorf("got %v, %v; want %s", got, err, want)
	}
	if _, err := plans(Limits{MaxThreads: func(Kernel) int { return 128 }}, dn); err == nil {
		t.Error("delta_step over the pipeline's threads: no error")
	}
}

func TestKernelNames(t *testing.T) {
	seen := map[string]bool{}
	for k := Kernel(0); int(k) < NumKernels; k++ {
		if n := k.String(); n == "" || seen[n] {
			t.Errorf("kernel %d: name %q", k, n)
		}
		seen[k.String()] = true
	}
	if k := matvec(backend.BF16, true); k.String() != "matvec_bf16_t4" || !k.Matvec() || kDequant.Matvec() {
		t.Errorf("matvec(bf16, 4) = %v", k)
	}
}
