package model

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// BenchmarkPrefillPrompt is scripts/gpu-bench.sh's prefill measurement
// (issue 12 §4): one prompt of FMOE_BENCH_PREFILL tokens (default 1,024)
// through the model FMOE_BENCH_MODEL in one chunk, routed by a trace
// fitted to the 397B's measured routing (routetrace.Fitted, model
// FMOE_BENCH_ROUTING, default mix), so that the prompt needs the experts
// a real prompt would. Tiers (FMOE_BENCH_PREFILL_TIERS picks):
//   - resident: every expert of the pack in the GPU tier (warmed by a
//     first pass): the prompt's compute, nothing over PCIe;
//   - pagecache: no GPU tier, every needed expert read once from the page
//     cache and copied to the device.
//
// Each tier runs with the tensor-core matmul ("mma": FMOE_CUDA_MMA_MIN set
// to FMOE_BENCH_MMA_MIN, default 8) and without it ("cores":
// FMOE_CUDA_MMA_MIN=-1, matvec.h's CUDA-core kernel), so one run gives the
// before and after. Metrics: ms per prompt (wall, no
// Timing syncs) and per layer; the floor's terms: distinct experts per
// layer, expert bytes, resident weight bytes and matmul FLOPs per layer.
// CUDA only (FMOE_TEST_BACKEND=cuda); the CPU would take minutes.
func BenchmarkPrefillPrompt(b *testing.B) {
	dir := benchModelDir(b)
	T := envInt("FMOE_BENCH_PREFILL", 1024)
	routing := os.Getenv("FMOE_BENCH_ROUTING")
	if routing == "" {
		routing = "mix"
	}
	perLayer, _, err := residentBytes(dir)
	if err != nil {
		b.Fatal(err)
	}
	layerParams, err := layerMatmulParams(dir)
	if err != nil {
		b.Fatal(err)
	}
	mmaMin := os.Getenv("FMOE_BENCH_MMA_MIN") // rows from which "mma" runs use the tensor cores
	if mmaMin == "" {
		mmaMin = "8"
	}
	tiers := []string{"resident", "pagecache"}
	if v := os.Getenv("FMOE_BENCH_PREFILL_TIERS"); v != "" {
		tiers = slices.DeleteFunc(tiers, func(t string) bool { return !slices.Contains(strings.Split(v, ","), t) })
	}
	for _, tier := range tiers {
		for _, path := range []string{"mma", "cores"} {
			b.Run(fmt.Sprintf("%s/%s", tier, path), func(b *testing.B) {
				// The CUDA backend reads its threshold at New.
				if path == "cores" {
					b.Setenv("FMOE_CUDA_MMA_MIN", "-1")
				} else {
					b.Setenv("FMOE_CUDA_MMA_MIN", mmaMin)
				}
				be := testBackend(b)
				if be == nil {
					b.Skip("CUDA only (FMOE_TEST_BACKEND=cuda)")
				}
				ec, ok := be.(backend.ExpertCache)
				if !ok {
					b.Skip("the backend has no GPU tier")
				}
				m, err := Open(dir, Options{Backend: be, GPUCache: GPUCacheOff, MaxContext: T + 16, PrefillChunk: T})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				L, E, K := len(m.layers), m.Config.NumExperts, m.K
				if tier == "resident" {
					if err := m.setupCache(int64(L*E) * (m.experts.set.Stride + 4096)); err != nil {
						b.Fatal(err)
					}
				}
				tr, err := routetrace.Generate(routetrace.Options{Layers: L, Experts: E, K: K,
					Tokens: T, Seed: 1, Params: routetrace.Fitted[routing]})
				if err != nil {
					b.Fatal(err)
				}
				ids := make([]int, T)
				for i := range ids {
					ids[i] = (i*7919 + 5) % m.Config.VocabSize
				}
				prompt := func() time.Duration {
					s, err := m.NewSession()
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					s.Routes = tr
					t0 := time.Now()
					if _, err := s.Forward(ids); err != nil {
						b.Fatal(err)
					}
					return time.Since(t0) // Forward read the logits back: the device is done
				}
				prompt() // warm-up: kernels compiled, the GPU tier filled (resident)
				st0 := m.ExpertStats()
				b.ResetTimer()
				wall := prompt()
				b.StopTimer()
				st := m.ExpertStats()
				if free, _, err := ec.DeviceMemory(); err == nil {
					b.ReportMetric(float64(free)/(1<<30), "gpu-free-GiB")
				}
				msp := ms(wall)
				b.ReportMetric(msp, "ms/prompt")
				b.ReportMetric(msp/float64(L), "ms/layer")
				b.ReportMetric(float64(T)/wall.Seconds(), "tok/s")
				b.ReportMetric(float64(L), "layers")
				b.ReportMetric(float64(T), "tokens")
				b.ReportMetric(float64(st.Uses-st0.Uses)/float64(L), "experts/layer")
				b.ReportMetric(100*float64(st.GPUHits-st0.GPUHits)/float64(max(st.Uses-st0.Uses, 1)), "hit-%")
				b.ReportMetric(float64(m.experts.set.Stride), "expert-B")
				b.ReportMetric(float64(perLayer)/1e6, "resident-MB/layer")
				// Matmul FLOPs per layer: each token through the layer's
				// resident weights and its K experts' three projections.
				c := &m.Config
				fl := 2 * float64(T) * (float64(layerParams) + float64(K)*3*float64(c.HiddenSize)*float64(c.MoeIntermediateSize))
				b.ReportMetric(fl/1e9, "GFLOP/layer")
			})
		}
	}
}

// layerMatmulParams is the mean number of weight elements of a layer's
// resident two-dimensional tensors (mixer, router, shared expert): what
// each token multiplies through besides its routed experts.
func layerMatmulParams(dir string) (int64, error) {
	man, err := format.Open(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for i := range man.Tensors {
		t := &man.Tensors[i]
		if strings.HasPrefix(t.Name, "model.layers.") && len(t.Shape) == 2 {
			n += t.Elements()
		}
	}
	return n / int64(max(man.Config.NumHiddenLayers, 1)), nil
}
