package model

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
	"github.com/fmoe/fmoe/runtime/parallel"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// predictRate is the share of a layer's picks its router predicts from
// the router input that many layers before (BenchmarkRouterPrediction on
// the built-in model, docs/benchmarks.md).
var predictRate = map[int]float64{1: 0.766, 2: 0.670}

// BenchmarkTieredDecode is scripts/gpu-bench.sh's decode measurement: it
// replays a routing trace fitted to the 397B's measured routing
// (routetrace.Fitted, model FMOE_BENCH_ROUTING, default mix) on the model
// FMOE_BENCH_MODEL (a synthetic pack of a few of its layers), warms up for
// FMOE_BENCH_WARM tokens and times FMOE_BENCH_TOKENS decode tokens, at
// K=4 and K=10, with three GPU tiers:
//   - scaled: what the whole model would get per layer on this card, i.e.
//     (free device memory − FMOE_BENCH_RESIDENT bytes of the full model's
//     non-expert weights − 2 GiB) / FMOE_BENCH_FULL_LAYERS (60), times the
//     pack's layers;
//   - tiered: scaled, plus the host tier (Options.HostCache) the whole
//     model would get per layer: (memory available − 8 GiB) / 60;
//   - off: no GPU tier (every expert from the page cache, copied);
//   - host: no GPU tier, every expert in the host tier (issue 13's row 2:
//     experts in RAM; with -cpumiss the CPU computes its share there);
//   - resident: every expert of the pack on the GPU (the launch-bound
//     floor of a layer);
//   - at K=10 also resident-unbatched (hits computed one launch per op,
//     not batched) and scaled-1pread (each expert read by one pread), to
//     measure what each of those levers saves;
//   - at K=4 also scaled-sync: each first read checksummed before its
//     bind (Options.VerifyBeforeCompute, the order before issue 12's
//     change) instead of beside its compute (the default, integrity.go);
//   - on request (FMOE_BENCH_TIERS, comma-separated names, run exactly as
//     given; a tier's levers combine, e.g. tiered-preload-cpumiss):
//     scaled-eager and resident-eager:
//     every op launched one by one (no layer graphs, no fused combine);
//     scaled-verified: every expert read and checksummed once before
//     decoding, as in a process that has run a while (a first read is
//     checksummed, integrity.go; the GPU tier starts empty all the same);
//     "-sync" on any tier (off-sync, tiered-sync: the CPU has off and
//     tiered) is that tier with the checks before the bind;
//     scaled-cpumiss: scaled with Options.MissBackend, a CPU backend on
//     every core computing the tier's repeat misses beside the GPU's hits
//     (issue 12 §2; cpumiss.go), its share in cpu-misses/layer; with
//     a one-token step's share on a goroutine of its own beside the link
//     (missApart, the default), or with -interleaved (host-cpumiss-
//     interleaved) taking turns with the link's experts on one;
//     scaled-8pread and scaled-16pread: each miss read by 8 or 16
//     preads (readParts) instead of 4; resident-dev: resident with the
//     layers routed on the device (devroute.go) and the model's own
//     router (a trace is a host choice), its share in dev-routed-%;
//     tiered-incl: tiered with the host tier inclusive (every miss read
//     into it) rather than the GPU tier's victim cache (demote.go);
//     tiered-preload: tiered with both tiers preloaded (Preload: the
//     host tier takes what the GPU tier leaves out), as a server started
//     with --preload, so no miss is a first read from the files;
//     -devmiss (with -dev): the layers the GPU tier holds in part routed
//     on the device too, their misses computed by the host after
//     (devpartial.go; the default since session 16, so the lever only
//     names it), against -nodevmiss, which keeps those layers on the host
//     path (the model's own router in both: a trace is a host choice);
//     -table: the trace's picks uploaded at each step's start and the
//     layers routed on the device with them (Session.RoutesAhead,
//     devTable: the device's top-K still runs, into a scratch, and a
//     partly held layer's ids are still read back), so that the device
//     paths run on the calibrated trace, the partly held layers too
//     (design E on the trace: tiered-preload-prefetch-table);
//     -serial (with -devmiss): a partly held layer reads its ids after
//     its held experts and queues its combine and prefetches after its
//     last miss's copy, as before session 16 (partSerial), for the A/B;
//     -pfnow: a partly held layer without a miss queues the next
//     layer's prefetches in its tail, before the next layer's graph, as
//     before session 18 (prefetchNow), for the A/B; -probe: its picks
//     probed with CachedExpert and Releases rather than TouchExpert
//     (touchOff), likewise; -nosettle: a prefetch that has landed stays
//     out of the device index until its first use (settleOff), likewise;
//     -apart (with -dev): the shared expert in launches of its own, not
//     as a job of the routed batch (backend.SharedIndexer), for the A/B;
//     -prefetch: the next layer's picks prefetched from the host tier
//     (Options.Prefetch), predicted by the trace blurred to
//     FMOE_BENCH_PREDICT's accuracy (default: the built-in model's at that
//     distance, below), FMOE_BENCH_PREFETCH_AHEAD layers ahead (default 2:
//     at K=10 3-6% faster than 1 in runs 23 and 27, at K=4 the same); its
//     prefetches/layer and the share used.
//
// Metrics: ms/token and ms/layer (wall clock, no Timing syncs), the GPU
// tier's hit share, misses and host-to-device MB per token, and for the
// floor the bytes a token reads from resident weights per layer and for
// lm_head; on CUDA also each layer's device time from stamps (no sync
// inside a step) over as many tokens again: clock-ms/layer, their mean,
// and clock-ms/layer@full, the stack extrapolated by kind to
// FMOE_BENCH_FULL_LAYERS (layersAt: a token's first PrefetchAhead layers,
// which no prefetch reaches, and its last, whose misses queue behind no
// prefetch for a later layer, are 3 of 60 in the model and 3 of a 4-layer
// stack), and clock-ms/L<l>, each layer's. Run
// it with FMOE_TEST_BACKEND=cuda on the GPU machine.
func BenchmarkTieredDecode(b *testing.B) {
	dir := benchModelDir(b)
	warm, meas := envInt("FMOE_BENCH_WARM", 1000), envInt("FMOE_BENCH_TOKENS", 500)
	fullLayers := envInt("FMOE_BENCH_FULL_LAYERS", 60)
	resident := int64(envInt("FMOE_BENCH_RESIDENT", 5_500_000_000))
	routing := os.Getenv("FMOE_BENCH_ROUTING")
	if routing == "" {
		routing = "mix"
	}
	perLayer, headBytes, err := residentBytes(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []int{4, 10} {
		// resident-dev: every expert in the tier and the layers routed on
		// the device (devroute.go): the model's own router, as no trace
		// can be replayed without the host's choice; with every expert
		// resident the choice changes no cost.
		tiers := []string{"scaled", "tiered", "off", "resident", "resident-dev"}
		if k == 4 {
			// The first-read checksum beside the compute against before it.
			tiers = append(tiers, "scaled-sync")
		}
		if k == 10 {
			// What each lever saves: batched hits (launches) and split reads.
			tiers = append(tiers, "resident-unbatched", "scaled-1pread")
		}
		if v := os.Getenv("FMOE_BENCH_TIERS"); v != "" {
			// Exactly the tiers asked for, levers combined as given.
			tiers = strings.Split(v, ",")
		}
		for _, name := range tiers {
			// A tier's levers combine: tiered-preload-cpumiss is both.
			tier, rest, _ := strings.Cut(name, "-")
			levers := strings.Split(rest, "-")
			has := func(l string) bool { return slices.Contains(levers, l) }
			b.Run(fmt.Sprintf("k=%d/%s", k, name), func(b *testing.B) {
				defer func(bh, g, c, d, x, dm, so, ps, pn, to, se bool, rp int) {
					batchHits, graphsOff, combineOff, devOff, exclusiveOff, devMissOn, sharedOff, partSerial, prefetchNow, touchOff, settleOff, readParts = bh, g, c, d, x, dm, so, ps, pn, to, se, rp
				}(batchHits, graphsOff, combineOff, devOff, exclusiveOff, devMissOn, sharedOff, partSerial, prefetchNow, touchOff, settleOff, readParts)
				defer func(v bool) { missApart = v }(missApart)
				for _, lever := range levers {
					switch lever {
					case "cpuapart": // the default since session 24; kept so that older tier names run
						missApart = true
					case "interleaved":
						missApart = false
					case "incl":
						exclusiveOff = true
					case "dev":
						devOff = false
					case "devmiss":
						devMissOn = true
					case "nodevmiss":
						devMissOn = false
					case "serial":
						partSerial = true
					case "pfnow":
						prefetchNow = true
					case "probe":
						touchOff = true
					case "nosettle":
						settleOff = true
					case "table":
						devOff = false
					case "apart":
						sharedOff = true
					case "unbatched":
						batchHits = false
					case "eager":
						graphsOff, combineOff = true, true
					case "1pread", "8pread", "16pread":
						readParts, _ = strconv.Atoi(strings.TrimSuffix(lever, "pread"))
					case "", "cpumiss", "sync", "verified", "preload", "prefetch":
					default:
						b.Fatalf("tier %s: unknown lever %q", name, lever)
					}
				}
				be := testBackend(b)
				if be == nil {
					be = cpu.New(cpu.Options{})
				}
				var free int64
				ec, gpuTier := be.(backend.ExpertCache)
				if gpuTier {
					var err error
					if free, _, err = ec.DeviceMemory(); err != nil {
						b.Fatal(err)
					}
				} else if tier != "off" && tier != "tiered" && tier != "host" {
					b.Skip("the backend has no GPU tier (FMOE_TEST_BACKEND=cuda)")
				}
				var host int64
				if tier == "host" {
					// Every expert of the pack in the host tier and none on
					// the GPU: issue 13's row 2 (experts in RAM).
					host = packExpertBytes(dir)
				}
				if tier == "tiered" {
					// The host tier the whole model would get per layer:
					// the memory available less 8 GiB, over 60 layers.
					avail, _, _ := memAvailable()
					host = (avail - 8<<30) / int64(fullLayers) * int64(len(m0layers(dir)))
				}
				devs, coll := benchDevices(b, be)
				var missBe backend.Backend
				var share float64
				var auto, missTask, admit, affine bool
				var prime time.Duration
				if has("cpumiss") {
					// FMOE_BENCH_MISS_PRIME: Options.MissPrime (fmoe-run's FMOE_CPU_PRIME).
					if v := os.Getenv("FMOE_BENCH_MISS_PRIME"); v != "" {
						if prime, err = time.ParseDuration(v); err != nil {
							b.Fatal(err)
						}
					}
					// FMOE_BENCH_MISS_SHARE: the CPU's share of the repeat misses (default all;
					// auto: Options.MissAuto); FMOE_BENCH_MISS_THREADS: its threads (default one a core).
					// As fmoe-run's share: its idle threads sleep in a futex (cpu.Options.FutexWake;
					// FMOE_BENCH_MISS_WAKE=channel, the old way) and the share is one task
					// (Options.MissTask; FMOE_BENCH_MISS_OPS=1, the three ops).
					missBe = cpu.New(cpu.Options{Threads: envInt("FMOE_BENCH_MISS_THREADS", 0), FutexWake: envOneOf(b, "FMOE_BENCH_MISS_WAKE", "futex", "channel")})
					missTask = envOneOf(b, "FMOE_BENCH_MISS_OPS", "0", "1")
					// FMOE_BENCH_MISS_ADMIT=1: Options.MissAdmit (fmoe-run's FMOE_CPU_ADMIT=1).
					admit = !envOneOf(b, "FMOE_BENCH_MISS_ADMIT", "0", "1")
					// FMOE_BENCH_MISS_TUNE=affine: Options.MissAffine (fmoe-run's FMOE_CPU_TUNE=affine).
					affine = !envOneOf(b, "FMOE_BENCH_MISS_TUNE", "ratio", "affine")
					defer missBe.Close()
					if v := os.Getenv("FMOE_BENCH_MISS_SHARE"); v == "auto" {
						auto = true
					} else if v != "" {
						if share, err = strconv.ParseFloat(v, 64); err != nil {
							b.Fatal(err)
						}
					}
				}
				// FMOE_BENCH_FUSE=0: every weight registered alone (fuse.go), for comparison.
				fuseOff = os.Getenv("FMOE_BENCH_FUSE") == "0"
				m, err := Open(dir, Options{Backend: be, ExpertsPerToken: k, GPUCache: GPUCacheOff, MaxContext: 4096, HostCache: host,
					Devices: devs, Collective: coll, VerifyBeforeCompute: has("sync"), MissBackend: missBe, MissShare: share, MissAuto: auto, MissPrime: prime, MissTask: missTask, MissAdmit: admit, MissAffine: affine && auto,
					Prefetch: has("prefetch"), PrefetchAhead: envInt("FMOE_BENCH_PREFETCH_AHEAD", 2), PrefetchPace: envInt("FMOE_BENCH_PF_PACE", 0)})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				L := len(m.layers)
				var budget int64
				switch tier {
				case "scaled", "tiered":
					// A backend with less free memory than the 397B's resident
					// weights (the CPU's, on a small box) gets no tier, not a
					// negative one.
					budget = max(free-resident-2<<30, 0) / int64(fullLayers) * int64(L)
				case "resident":
					budget = int64(L*m.Config.NumExperts) * (m.experts.set.Stride + 4096)
				}
				if budget > 0 && gpuTier {
					if err := m.setupCache(budget); err != nil {
						b.Fatal(err)
					}
					// Each further device holds a tier of the same budget.
					if err := m.setupRankCaches(budget); err != nil {
						b.Fatal(err)
					}
				}
				if has("verified") {
					if err := m.verifyExperts(); err != nil {
						b.Fatal(err)
					}
				}
				if (tier == "resident" || has("preload")) && gpuTier {
					// Every expert into the tier before decoding, so that
					// "resident" means every hit (not the trace's first
					// uses during warm-up).
					if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				tr, err := routetrace.Generate(routetrace.Options{Layers: L, Experts: m.Config.NumExperts, K: k,
					// the timed tokens, then as many under the layer clock
					Tokens: 2 + warm + 2*meas + 40, Seed: 1, Params: routetrace.Fitted[routing]})
				if err != nil {
					b.Fatal(err)
				}
				s, err := m.NewSession()
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				s.Routes = tr
				if has("prefetch") {
					// FMOE_BENCH_PREDICT: the share of the next layer's picks
					// predicted right (default: what BenchmarkRouterPrediction
					// measured on the built-in model from the router input one
					// layer before, 0.766, and two, 0.670; further ahead it must
					// be given).
					acc, ok := predictRate[m.prefetchAhead]
					if v := os.Getenv("FMOE_BENCH_PREDICT"); v != "" {
						if acc, err = strconv.ParseFloat(v, 64); err != nil || acc < 0 || acc > 1 {
							b.Fatalf("FMOE_BENCH_PREDICT=%q: want a share in [0, 1]", v)
						}
					} else if !ok {
						b.Fatalf("FMOE_BENCH_PREFETCH_AHEAD=%d: no measured prediction rate that far ahead; set FMOE_BENCH_PREDICT", m.prefetchAhead)
					}
					s.Routes = &blurredTrace{Trace: tr, acc: acc, E: m.Config.NumExperts, K: k}
				}
				if has("dev") {
					s.Routes = nil
				}
				s.RoutesAhead = has("table")
				V := m.Config.VocabSize
				// A greedy step as Generate takes it (ForwardGreedy: the pick
				// where the logits are); FMOE_BENCH_LOGITS=1: the logits read
				// back into one buffer, as the server keeps them.
				var lg []float32
				logits := os.Getenv("FMOE_BENCH_LOGITS") == "1"
				step := func(n int) {
					for i := 0; i < n; i++ {
						var err error
						id := (s.pos*7919 + 5) % V
						if logits {
							lg, err = s.ForwardContextInto(context.Background(), lg, []int{id})
						} else {
							_, err = s.ForwardGreedy(context.Background(), []int{id})
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				step(1 + warm)
				st0 := m.ExpertStats()
				// FMOE_CUDA_PROFILE: each kernel's device time over the timed tokens.
				prof, _ := be.(interface{ KernelProfile() (string, error) })
				if prof != nil {
					if _, err := prof.KernelProfile(); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				t0 := time.Now()
				// Each token's time too: the median is steadier than the
				// mean against the odd slow token (a page fault, the host
				// descheduled).
				each := make([]time.Duration, meas)
				for i := range each {
					t := time.Now()
					step(1)
					each[i] = time.Since(t)
				}
				wall := time.Since(t0)
				b.StopTimer()
				slices.Sort(each)
				p50 := ms(each[meas/2])
				if prof != nil {
					if t, err := prof.KernelProfile(); err != nil {
						b.Fatal(err)
					} else if t != "" {
						fmt.Fprintf(os.Stderr, "### %s: device time over %d tokens (wall %.2f ms)\n%s", b.Name(), meas, ms(wall), t)
					}
				}
				st := m.ExpertStats()
				// A prefetched expert the layer used is a miss the prefetch
				// moved off the step's path: still a miss for the floor
				// (its bytes crossed the link), not a GPU-tier hit.
				pf, pfUsed := st.Prefetched-st0.Prefetched, st.PrefetchUsed-st0.PrefetchUsed
				uses, hits := st.Uses-st0.Uses, st.GPUHits-st0.GPUHits-pfUsed
				// The head (final norm, lm_head, the greedy pick and its
				// check, or with FMOE_BENCH_LOGITS the logits read back and
				// checked) timed alone over 20 more tokens: a one-float read
				// after the last layer's ops drains the stream, the clock
				// runs from there to the step's return. The layers run as
				// timed (graphs on), unlike under Timing, whose phases sync.
				// The median of the 20: run 21's mean moved by 2x between
				// runs of one call (an odd slow token), which made two
				// ms/layer figures artefacts.
				heads := make([]time.Duration, 20)
				var at time.Time
				var probeErr error
				one := make([]float32, 1)
				s.beforeHead = func() {
					v, err := m.be.View(s.sc.h, 0, 1)
					if err == nil {
						err = m.be.Read(one, v)
					}
					probeErr = errors.Join(probeErr, err)
					at = time.Now()
				}
				for i := range heads {
					step(1)
					heads[i] = time.Since(at)
				}
				s.beforeHead = nil
				if probeErr != nil {
					b.Fatal(probeErr)
				}
				slices.Sort(heads)
				head := ms(heads[len(heads)/2])
				// Each layer's device time (CUDA's stamps, no sync inside a
				// step), over as many tokens again: a token's first layers,
				// which no prefetch reaches, apart from the rest, and the
				// stack extrapolated to fullLayers by kind (layersAt).
				var per []time.Duration
				if sp, ok := be.(stamper); ok {
					if per, err = layerClock(s, sp, meas, step); err != nil {
						b.Fatal(err)
					}
				}
				// A short pass with Timing for the report's phases.
				tm := &Timing{}
				s.Timing = tm
				step(20)
				if p := os.Getenv("FMOE_BENCH_REPORT"); p != "" {
					// The phases of the timed pass (each phase syncs, so
					// they show where host and device time go, not
					// speed), appended to the file FMOE_BENCH_REPORT.
					if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
						fmt.Fprintf(f, "### %s\n", b.Name())
						tm.Report(f)
						f.Close()
					}
				}
				tok := ms(wall) / float64(meas)
				b.ReportMetric(tok, "ms/token")
				b.ReportMetric((tok-head)/float64(L), "ms/layer")
				b.ReportMetric((p50-head)/float64(L), "p50-ms/layer")
				b.ReportMetric(head, "head-ms/token")
				b.ReportMetric(float64(L), "layers")
				if per != nil {
					var sum time.Duration
					for _, d := range per {
						sum += d
					}
					b.ReportMetric(ms(sum)/float64(L), "clock-ms/layer")
					b.ReportMetric(ms(m.layersAt(per, fullLayers))/float64(fullLayers), "clock-ms/layer@full")
					for l, d := range per {
						b.ReportMetric(ms(d), fmt.Sprintf("clock-ms/L%d", l))
					}
				}
				b.ReportMetric(100*float64(hits)/float64(max(uses, 1)), "hit-%")
				b.ReportMetric(float64(uses-hits)/float64(meas)/float64(L), "misses/layer")
				b.ReportMetric(float64(st.MissRank-st0.MissRank)/float64(meas)/float64(L), "cpu-misses/layer")
				if m.tune != nil {
					r := m.tune.report()
					b.ReportMetric(r.Share, "auto-share")
					b.ReportMetric(ms(r.CPU), "auto-cpu-ms/expert")
					b.ReportMetric(ms(r.Link), "auto-link-ms/expert")
					if r.Fitted {
						b.ReportMetric(ms(r.CPUFixed), "fit-cpu-ms/layer")
						b.ReportMetric(ms(r.CPUPer), "fit-cpu-ms/expert")
						b.ReportMetric(ms(r.LinkFixed), "fit-link-ms/layer")
						b.ReportMetric(ms(r.LinkPer), "fit-link-ms/expert")
					}
				}
				b.ReportMetric(float64(pf)/float64(meas)/float64(L), "prefetch/layer")
				b.ReportMetric(100*float64(pfUsed)/float64(max(pf, 1)), "prefetch-used-%")
				b.ReportMetric(100*float64(st.DevLayers-st0.DevLayers)/float64(meas)/float64(L), "dev-routed-%")
				b.ReportMetric(float64(st.DeviceBytes-st0.DeviceBytes)/1e6/float64(meas), "h2d-MB/token")
				b.ReportMetric(100*float64(st.HostHits-st0.HostHits)/float64(max(uses-hits, 1)), "host-hit-%")
				b.ReportMetric(float64(host)/float64(max(L, 1))/float64(m.experts.set.Stride), "host-experts/layer")
				b.ReportMetric(float64(budget)/float64(L)/float64(m.experts.set.Stride), "tier-experts/layer")
				b.ReportMetric(float64(perLayer)/1e6, "resident-MB/layer")
				b.ReportMetric(float64(headBytes)/1e6, "head-MB")
				b.ReportMetric(float64(m.experts.set.Stride), "expert-B")
				b.ReportMetric(float64(len(m.ranks)), "devices")
			})
		}
	}
}

// benchDevices opens CUDA devices 1…FMOE_BENCH_GPUS-1 beside be (device 0)
// and NCCL over all of them, for the routed experts to be split over; none
// by default.
func benchDevices(b *testing.B, be backend.Backend) ([]backend.Backend, parallel.Collective) {
	n := envInt("FMOE_BENCH_GPUS", 1)
	if n <= 1 {
		return nil, nil
	}
	if _, ok := be.(*cuda.Backend); !ok {
		b.Skipf("FMOE_BENCH_GPUS=%d needs FMOE_TEST_BACKEND=cuda", n)
	}
	all := []backend.Backend{be}
	for d := 1; d < n; d++ {
		x, err := cuda.NewWithOptions(cuda.Options{Device: d})
		if err != nil {
			b.Fatalf("FMOE_BENCH_GPUS=%d: device %d: %v", n, d, err)
		}
		b.Cleanup(func() { x.Close() })
		all = append(all, x)
	}
	coll, err := parallel.NewNCCL(all)
	if err != nil {
		b.Fatal(err)
	}
	return all[1:], coll
}

// residentBytes is what a decode token reads of the non-expert weights:
// per layer (the mean), and for lm_head (the embedding reads one row).
func residentBytes(dir string) (perLayer, head int64, err error) {
	man, err := format.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	var layers int64
	for i := range man.Tensors {
		t := &man.Tensors[i]
		n := t.Data.Size
		if t.Scales != nil {
			n += t.Scales.Size + t.Biases.Size
		}
		switch {
		case t.Name == "lm_head.weight" || t.Name == "model.embed_tokens.weight" && man.Config.TieWordEmbeddings:
			head += n
		case strings.HasPrefix(t.Name, "model.layers."):
			layers += n
		}
	}
	return layers / int64(man.Config.NumHiddenLayers), head, nil
}

// envOneOf is cliutil.EnvChoice for a benchmark: a misspelt variant
// stops it rather than being measured as the default.
func envOneOf(b *testing.B, name, on, off string) bool {
	v, err := cliutil.EnvChoice(name, on, off)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// m0layers is the pack's layer list (its manifest), for sizing a tier
// before Open.
// packExpertBytes is the size of every routed expert of the pack's first
// expert set, as the host tier lays them out (one stride each).
func packExpertBytes(dir string) int64 {
	man, err := format.Open(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range man.Experts[0].Layers {
		n += int64(len(l.CRC32C)) * man.Experts[0].Stride
	}
	return n
}

func m0layers(dir string) []format.ExpertLayer {
	man, err := format.Open(dir)
	if err != nil {
		return nil
	}
	return man.Experts[0].Layers
}

// verifyExperts reads every expert of every layer once, so that the
// first-read checksums (integrity.go) are behind the benchmark.
func (m *Model) verifyExperts() error {
	ids := make([]int, m.Config.NumExperts)
	for i := range ids {
		ids[i] = i
	}
	for l := range m.layers {
		if err := m.experts.stream(l, ids, func(int, *[3]backend.Weight) error { return nil }); err != nil {
			return err
		}
	}
	return nil
}

// blurredTrace is a trace that predicts its own next layer's picks with a
// given accuracy (RoutePredictor, for the prefetch lever): each pick is
// named with probability acc, else replaced by an expert the layer does
// not pick. The draws are a hash of (layer, position, pick), so that every
// run predicts alike.
type blurredTrace struct {
	*routetrace.Trace
	acc  float64
	E, K int
	idx  []int
	w    []float32
}

func (p *blurredTrace) Predict(l, pos int, dst []int) []int {
	p.idx, p.w = growTo(p.idx, p.K), growTo(p.w, p.K)
	if p.Choose(l, pos, p.idx, p.w) != nil {
		return dst
	}
	for j, id := range p.idx {
		h := splitmix(uint64(l)<<40 ^ uint64(pos)<<8 ^ uint64(j))
		if float64(h>>11)/(1<<53) >= p.acc {
			for id = int(splitmix(h) % uint64(p.E)); slices.Contains(p.idx, id); id = (id + 1) % p.E {
			}
		}
		dst = append(dst, id)
	}
	return dst
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
