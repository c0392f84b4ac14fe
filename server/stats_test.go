package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/model"
)

type sseEvent struct{ name, data string }

// statsEvents opens GET /v1/fmoe/stats and returns its events as they come
// and a function that closes the stream.
func statsEvents(t *testing.T, url string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/fmoe/stats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stats: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 4096)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case line == "" && ev.data != "":
				ch <- ev
				ev = sseEvent{}
			}
		}
	}()
	t.Cleanup(cancel)
	return ch, cancel
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the stats stream ended")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no stats event within 20 s")
	}
	return sseEvent{}
}

// TestStatsStream: the stream describes the model, then reports every
// forward step of a generation: prefill and decode tokens that add up to
// the request's usage, K distinct experts per layer and token, K blocks
// per layer read per decode token, phase times that fit in the step. It
// stops observing the model once the last stream closes.
func TestStatsStream(t *testing.T) {
	s, c, url := start(t, nil)
	ch, closeStream := statsEvents(t, url)
	ev := next(t, ch)
	var cfg statsConfig
	if err := json.Unmarshal([]byte(ev.data), &cfg); ev.name != "config" || err != nil {
		t.Fatalf("first event %q %s (%v)", ev.name, ev.data, err)
	}
	mc := engine.Model.Config
	if cfg.Layers != 8 || cfg.Experts != 16 || cfg.K != engine.Model.K || len(cfg.FullAttention) != 8 ||
		!cfg.FullAttention[3] || cfg.FullAttention[2] || cfg.Model != "fmoe-tiny-chat" || cfg.Tiers[0] != "page_cache" {
		t.Errorf("config %+v for %d layers, %d experts", cfg, mc.NumHiddenLayers, mc.NumExperts)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Chat.Completions.New(ctx, params("Count from 5 to 12.", false))
	if err != nil {
		t.Fatal(err)
	}
	u := resp.Usage
	if resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("finish %q", resp.Choices[0].FinishReason)
	}
	// Every prompt token not reused is computed, and every generated one
	// but the final end-of-turn token is fed back.
	want := int(u.PromptTokens-u.PromptTokensDetails.CachedTokens) + int(u.CompletionTokens) - 1
	stride := int64(-1)
	fed, decode := 0, 0
	for fed < want {
		ev := next(t, ch)
		if ev.name != "step" {
			t.Fatalf("event %q", ev.name)
		}
		if !strings.Contains(ev.data, `"host":null,"gpu":null`) {
			t.Errorf("no null GPU and host tiers: %s", ev.data)
		}
		var st statsStep
		if err := json.Unmarshal([]byte(ev.data), &st); err != nil {
			t.Fatal(err)
		}
		fed += st.Tokens
		if len(st.Layers) != 8 || len(st.Routes) != 8 || st.RouteTokens != min(st.Tokens, routeTokens) {
			t.Fatalf("step %s", ev.data)
		}
		var sum float64
		for l, L := range st.Layers {
			for _, ms := range []float64{L.MixerMS, L.RoutingMS, L.ExpertIOMS, L.ExpertComputeMS, L.OtherMS} {
				if ms < 0 {
					t.Errorf("layer %d: negative time in %+v", l, L)
				}
				sum += ms
			}
			if L.MixerMS <= 0 || L.ExpertComputeMS <= 0 {
				t.Errorf("layer %d: no mixer or expert compute time: %+v", l, L)
			}
			r := st.Routes[l]
			if len(r) != st.RouteTokens*cfg.K {
				t.Fatalf("layer %d: %d routed ids for %d tokens", l, len(r), st.RouteTokens)
			}
			for tok := 0; tok < st.RouteTokens; tok++ {
				seen := map[int]bool{}
				for _, e := range r[tok*cfg.K : (tok+1)*cfg.K] {
					if e < 0 || e >= cfg.Experts || seen[e] {
						t.Errorf("layer %d token %d: experts %v", l, tok, r[tok*cfg.K:(tok+1)*cfg.K])
					}
					seen[e] = true
				}
			}
		}
		if sum+st.EmbedMS+st.HeadMS > st.WallMS+0.01 {
			t.Errorf("phases %.3f ms in a %.3f ms step", sum+st.EmbedMS+st.HeadMS, st.WallMS)
		}
		pc := st.Experts.Cache.PageCache
		if pc == nil || pc.Hits > pc.Probed || pc.Probed > st.Experts.Reads || pc.PagesHit > pc.PagesProbed {
			t.Errorf("page cache %+v for %d reads", pc, st.Experts.Reads)
		}
		if st.Experts.Uses != st.Experts.Reads || st.Experts.DeviceBytes != 0 {
			t.Errorf("%d experts used, %d read, %d bytes to a device, without cache tiers", st.Experts.Uses, st.Experts.Reads, st.Experts.DeviceBytes)
		}
		if st.Kind == "decode" {
			decode++
			if st.Tokens != 1 {
				t.Errorf("a decode step of %d tokens", st.Tokens)
			}
			for l, n := range st.Experts.PerLayerReads {
				if n != int64(cfg.K) {
					t.Errorf("decode: layer %d read %d experts, want K=%d", l, n, cfg.K)
				}
			}
			if stride < 0 {
				stride = st.Experts.Bytes / int64(cfg.K*cfg.Layers)
			}
			if st.Experts.Bytes != stride*int64(cfg.K*cfg.Layers) || st.Experts.BytesPerToken != float64(st.Experts.Bytes) {
				t.Errorf("decode read %d bytes (%.0f per token), want K x layers x %d", st.Experts.Bytes, st.Experts.BytesPerToken, stride)
			}
		}
	}
	if fed != want || decode < int(u.CompletionTokens)-2 || stride <= 0 {
		t.Errorf("steps fed %d tokens (%d decode steps), want %d for usage %+v", fed, decode, want, u)
	}

	closeStream()
	waitFor(t, "the stream to close", func() bool {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		return len(s.hub.subs) == 0
	})
}

// TestStatsHead: HEAD gets the stream's headers and ends.
func TestStatsHead(t *testing.T) {
	s, _, url := start(t, nil)
	resp, err := http.Head(url + "/v1/fmoe/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	waitFor(t, "the HEAD request to end", func() bool {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		return len(s.hub.subs) == 0
	})
}

// TestStatsTiers: with GPU and host tiers, the step reports how each
// served the experts used.
func TestStatsTiers(t *testing.T) {
	st := &model.StepStats{Tokens: 1, K: 2, Layers: []model.LayerStats{
		{ExpertUses: 2, GPUHits: 1, HostHits: 1, DeviceBytes: 100, Experts: []int{3, 5}},
		{ExpertUses: 2, GPUHits: 0, HostHits: 1, ExpertReads: 1, ExpertBytes: 64, DeviceBytes: 200, Experts: []int{1, 2}},
	}}
	ev := newStatsStep(st, true, true)
	c := ev.Experts.Cache
	if c.GPU == nil || *c.GPU != (statsTier{Probed: 4, Hits: 1}) || c.Host == nil || *c.Host != (statsTier{Probed: 3, Hits: 2}) ||
		ev.Experts.Uses != 4 || ev.Experts.Reads != 1 || ev.Experts.DeviceBytes != 300 || ev.Experts.BytesPerToken != 64 {
		t.Errorf("experts %+v, gpu %+v, host %+v", ev.Experts, c.GPU, c.Host)
	}
	if ev = newStatsStep(st, false, false); ev.Experts.Cache.GPU != nil || ev.Experts.Cache.Host != nil {
		t.Errorf("tiers reported for a server without them: %+v", ev.Experts.Cache)
	}
}

// TestStatsLimit: at most maxStatsStreams streams are open at once.
func TestStatsLimit(t *testing.T) {
	_, _, url := start(t, nil)
	for i := 0; i < maxStatsStreams; i++ {
		ch, _ := statsEvents(t, url)
		if ev := next(t, ch); ev.name != "config" {
			t.Fatalf("stream %d: %q", i, ev.name)
		}
	}
	status, body := do(t, "GET", url+"/v1/fmoe/stats", "")
	if e := decodeError(t, body); status != http.StatusTooManyRequests || e.Error.Code != "too_many_streams" {
		t.Errorf("stream %d: %d %s", maxStatsStreams+1, status, body)
	}
}

// TestStatsSlowStream: publishing never waits for a stream; the steps a
// full stream could not take are counted and reported in its next event.
func TestStatsSlowStream(t *testing.T) {
	h := &statsHub{m: engine.Model}
	sub := h.subscribe()
	defer h.unsubscribe(sub)
	st := &model.StepStats{Tokens: 1, K: 1, Layers: make([]model.LayerStats, 2)}
	done := make(chan struct{})
	go func() {
		for i := 0; i < statsBacklog+5; i++ {
			h.publish(st)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publish blocked on a stream that does not read")
	}
	if len(sub.ch) != statsBacklog || sub.dropped != 5 {
		t.Errorf("%d queued, %d dropped; want %d and 5", len(sub.ch), sub.dropped, statsBacklog)
	}
}

// TestStatsShutdown: an open stats stream does not hold up a shutdown.
func TestStatsShutdown(t *testing.T) {
	s := New(ownEngine(t), Options{Name: "fmoe-tiny-chat"})
	url, shutdown, wait := serveOn(t, s)
	ch, _ := statsEvents(t, url)
	next(t, ch)
	t0 := time.Now()
	shutdown()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %v with a stats stream open", d)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("an event after shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Error("the stream is still open after shutdown")
	}
}

// TestTimings: a streamed reply's usage chunk says how fast it was made.
func TestTimings(t *testing.T) {
	_, _, url := start(t, nil)
	body := `{"stream":true,"stream_options":{"include_usage":true},"temperature":0,"max_tokens":16,"messages":[{"role":"user","content":"Count from 5 to 12."}]}`
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var last completion
	for data := range sse(t, resp) {
		if data != "[DONE]" {
			last = completion{}
			if err := json.Unmarshal([]byte(data), &last); err != nil {
				t.Fatalf("%v: %s", err, data)
			}
		}
	}
	u, tm := last.Usage, last.Timings
	if u == nil || tm == nil {
		t.Fatalf("last chunk %+v", last)
	}
	if tm.PredictedN != u.CompletionTokens || tm.PromptN+tm.CacheN != u.PromptTokens || tm.CacheN != u.PromptTokensDetails.CachedTokens ||
		tm.PromptMS <= 0 || tm.PredictedMS <= 0 || tm.PromptPerSecond <= 0 || tm.PredictedPerSecond <= 0 {
		t.Errorf("timings %+v for usage %+v", tm, u)
	}
	if got := float64(tm.PredictedN) / (tm.PredictedMS / 1000); got < tm.PredictedPerSecond*0.95 || got > tm.PredictedPerSecond*1.05 {
		t.Errorf("predicted_per_second %.2f, n/ms gives %.2f", tm.PredictedPerSecond, got)
	}
}

// TestIgnoreEOS: ignore_eos runs a reply that would end at once to
// max_tokens.
func TestIgnoreEOS(t *testing.T) {
	_, _, url := start(t, nil)
	for _, ignore := range []bool{false, true} {
		body := `{"temperature":0,"max_tokens":60,"ignore_eos":` + strconv.FormatBool(ignore) + `,"messages":[{"role":"user","content":"Count from 5 to 12."}]}`
		status, out := do(t, "POST", url+"/v1/chat/completions", body)
		var c completion
		if err := json.Unmarshal([]byte(out), &c); status != 200 || err != nil {
			t.Fatalf("%d %s", status, out)
		}
		finish, n := *c.Choices[0].FinishReason, c.Usage.CompletionTokens
		if ignore && (finish != "length" || n != 60) || !ignore && (finish != "stop" || n >= 60) {
			t.Errorf("ignore_eos %v: finish %q after %d tokens", ignore, finish, n)
		}
	}
}
