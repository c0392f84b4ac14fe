package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/model"
)

// GET /v1/fmoe/stats streams what the model does while it generates, as
// server-sent events (README, "Live view"): one "config" event, then one
// "step" event per forward step. The model is observed only while at least
// one stream is open; with none, a step pays one atomic load.

const (
	// maxStatsStreams bounds the open stats streams; more get HTTP 429.
	maxStatsStreams = 8
	// statsBacklog is how many steps may wait for a slow stream before
	// steps are dropped (and counted in the next event's "dropped").
	statsBacklog = 256
	// routeTokens caps the tokens of a step whose routing an event
	// carries: a long prefill chunk sends only its last ones.
	routeTokens = 64
	// statsKeepalive is the interval of comment lines on an idle stream,
	// which keep proxies from closing it and find clients that left.
	statsKeepalive = 15 * time.Second
)

type statsConfig struct {
	Model         string   `json:"model"`
	Layers        int      `json:"layers"`
	Experts       int      `json:"experts"`
	K             int      `json:"k"`
	FullAttention []bool   `json:"full_attention"`
	Tiers         []string `json:"cache_tiers"`
	RouteTokens   int      `json:"route_tokens"`
}

type statsStep struct {
	Kind    string       `json:"kind"` // "prefill" or "decode"
	Pos     int          `json:"pos"`
	Tokens  int          `json:"tokens"`
	WallMS  float64      `json:"wall_ms"`
	EmbedMS float64      `json:"embed_ms"`
	HeadMS  float64      `json:"head_ms"`
	Layers  []statsLayer `json:"layers"`
	Experts statsExperts `json:"experts"`
	// Routes[l] holds the routed experts of the step's last RouteTokens
	// tokens at layer l, token-major (RouteTokens·K ids).
	Routes      [][]int `json:"routes"`
	RouteTokens int     `json:"route_tokens"`
	Dropped     int64   `json:"dropped"`
}

type statsLayer struct {
	MixerMS         float64 `json:"mixer_ms"`
	RoutingMS       float64 `json:"routing_ms"`
	ExpertIOMS      float64 `json:"expert_io_ms"`
	ExpertComputeMS float64 `json:"expert_compute_ms"`
	OtherMS         float64 `json:"other_ms"`
}

type statsExperts struct {
	// Uses counts the experts computed (one per distinct expert of a
	// layer in the step); Reads of them were read from the files.
	Uses          int64      `json:"uses"`
	Reads         int64      `json:"reads"`
	Bytes         int64      `json:"bytes"`
	BytesPerToken float64    `json:"bytes_per_token"`
	DeviceBytes   int64      `json:"device_bytes"` // copied host-to-device (GPU tier only)
	Cache         statsTiers `json:"cache"`
	PerLayerReads []int64    `json:"layer_reads"`
}

// statsTiers are the expert caches, slowest first. A tier the server runs
// without is null.
type statsTiers struct {
	// PageCache: of the reads probed, those whose pages were all
	// resident; Pages* the same by page.
	PageCache *statsTier `json:"page_cache"`
	// Host: of the GPU tier's misses, those the host tier served.
	Host *statsTier `json:"host"`
	// GPU: of the experts used, those computed from device memory.
	GPU *statsTier `json:"gpu"`
}

type statsTier struct {
	Probed      int64 `json:"probed"`
	Hits        int64 `json:"hits"`
	PagesProbed int64 `json:"pages_probed,omitempty"`
	PagesHit    int64 `json:"pages_hit,omitempty"`
}

// statsHub fans the model's steps out to the open streams.
type statsHub struct {
	m    *model.Model
	mu   sync.Mutex
	subs map[*statsSub]struct{}
}

type statsSub struct {
	ch      chan *statsStep
	mu      sync.Mutex // guards dropped
	dropped int64
}

// subscribe opens a stream, or returns nil when maxStatsStreams are open.
// The first one starts observing the model.
func (h *statsHub) subscribe() *statsSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= maxStatsStreams {
		return nil
	}
	if h.subs == nil {
		h.subs = map[*statsSub]struct{}{}
	}
	sub := &statsSub{ch: make(chan *statsStep, statsBacklog)}
	h.subs[sub] = struct{}{}
	if len(h.subs) == 1 {
		h.m.Observe(h.publish)
	}
	return sub
}

// unsubscribe closes a stream; the last one stops observing the model.
func (h *statsHub) unsubscribe(sub *statsSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) == 0 {
		h.m.Observe(nil)
	}
}

// publish runs on the generating goroutine: it copies the step and hands
// it to every stream without waiting for any.
func (h *statsHub) publish(st *model.StepStats) {
	gpu, host := h.m.CacheBudgets()
	ev := newStatsStep(st, gpu > 0, host > 0)
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		select {
		case sub.ch <- ev:
		default:
			sub.mu.Lock()
			sub.dropped++
			sub.mu.Unlock()
		}
	}
}

func newStatsStep(st *model.StepStats, gpu, host bool) *statsStep {
	ev := &statsStep{
		Kind: "prefill", Pos: st.Pos, Tokens: st.Tokens,
		WallMS: msec(st.Wall), EmbedMS: msec(st.Embed), HeadMS: msec(st.Head),
		Layers: make([]statsLayer, len(st.Layers)), Routes: make([][]int, len(st.Layers)),
		RouteTokens: min(st.Tokens, routeTokens),
	}
	if st.Decode {
		ev.Kind = "decode"
	}
	pc, gt, ht := &statsTier{}, &statsTier{}, &statsTier{}
	x := &ev.Experts
	x.PerLayerReads = make([]int64, len(st.Layers))
	for l := range st.Layers {
		L := &st.Layers[l]
		t := &L.Time
		mixer := t[model.PhaseDeltaNet]
		if L.Full {
			mixer = t[model.PhaseAttention]
		}
		ev.Layers[l] = statsLayer{
			MixerMS: msec(mixer), RoutingMS: msec(t[model.PhaseRouting]),
			ExpertIOMS: msec(t[model.PhaseExpertWait]), ExpertComputeMS: msec(t[model.PhaseExpertCompute]),
			OtherMS: msec(t[model.PhaseNorm] + t[model.PhaseSharedExpert] + t[model.PhaseCombine] + t[model.PhaseExchange]),
		}
		if n := ev.RouteTokens * st.K; n <= len(L.Experts) {
			ev.Routes[l] = append([]int(nil), L.Experts[len(L.Experts)-n:]...)
		}
		x.Uses += L.ExpertUses
		x.Reads += L.ExpertReads
		x.Bytes += L.ExpertBytes
		x.DeviceBytes += L.DeviceBytes
		gt.Probed += L.ExpertUses
		gt.Hits += L.GPUHits
		ht.Probed += L.ExpertUses - L.GPUHits
		ht.Hits += L.HostHits
		x.PerLayerReads[l] = L.ExpertReads
		pc.Probed += L.ProbedReads
		pc.Hits += L.CachedReads
		pc.PagesProbed += L.ProbedPages
		pc.PagesHit += L.CachedPages
	}
	if st.Tokens > 0 {
		x.BytesPerToken = float64(x.Bytes) / float64(st.Tokens)
	}
	x.Cache.PageCache = pc
	if gpu {
		x.Cache.GPU = gt
	}
	if host {
		x.Cache.Host = ht
	}
	return ev
}

// msec is d in milliseconds, to the microsecond.
func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Server) statsConfig() *statsConfig {
	m := s.e.Model
	c := &statsConfig{
		Model: s.opts.Name, Layers: m.Config.NumHiddenLayers, Experts: m.Config.NumExperts, K: m.K,
		Tiers: []string{"page_cache"}, RouteTokens: routeTokens,
	}
	gpu, host := m.CacheBudgets()
	if host > 0 {
		c.Tiers = append(c.Tiers, "host")
	}
	if gpu > 0 {
		c.Tiers = append(c.Tiers, "gpu")
	}
	for l := 0; l < c.Layers; l++ {
		c.FullAttention = append(c.FullAttention, m.Config.LayerTypes[l] == format.FullAttention)
	}
	return c
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	sub := s.hub.subscribe()
	if sub == nil {
		writeError(w, http.StatusTooManyRequests, "rate_limit_error", "too_many_streams",
			fmt.Sprintf("%d stats streams are open already; close one", maxStatsStreams))
		return
	}
	defer s.hub.unsubscribe(sub)
	rc := http.NewResponseController(w)
	// A stream outlives the read timeout, which would otherwise end it.
	rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return // the headers are the whole answer
	}
	// Every write must be taken within the write timeout: a client that
	// stops reading is dropped, never waited for.
	send := func(format string, args ...any) bool {
		rc.SetWriteDeadline(time.Now().Add(s.opts.Timeouts.Write))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	event := func(name string, v any) bool {
		b, err := json.Marshal(v)
		return err == nil && send("event: %s\ndata: %s\n\n", name, b)
	}
	if !event("config", s.statsConfig()) {
		return
	}
	tick := time.NewTicker(statsKeepalive)
	defer tick.Stop()
	for {
		select {
		case ev := <-sub.ch:
			e := *ev // shared with the other streams
			sub.mu.Lock()
			e.Dropped, sub.dropped = sub.dropped, 0
			sub.mu.Unlock()
			if !event("step", &e) {
				return
			}
		case <-tick.C:
			if !send(": keepalive\n\n") {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.drained: // shutting down, and no generation is left to watch
			return
		case <-s.base.Done():
			return
		}
	}
}
