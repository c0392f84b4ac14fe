//go:build uitest

// The chat page in a real browser: `make ui-test` (or go test -tags uitest
// ./server/web/) drives headless Chromium against `fmoe-run serve` on the
// built-in model and writes a screenshot of each step under build/ui/.

package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fmoe/fmoe/pack"
)

const (
	root   = "../.."
	apiKey = "ui-test-key"
	// hostile marks the message whose reply the proxy makes up: markup
	// and script that the page must show as text.
	hostile = "Show me some markup"
)

var shots = filepath.Join(root, "build", "ui")

func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	addr, log := startServe(t, fmoeRun(t), packedModel(t))
	px := newProxy(t, addr)
	b := startBrowser(t, chromium, 1360, 860)
	b.navigate(px.srv.URL + "/")

	// The server wants a key: the page asks, refuses a wrong one, and
	// sends the right one with every request.
	b.wait("the key dialog", `document.getElementById("key-dialog").open`, 20*time.Second)
	b.screenshot("0-api-key.png")
	submitKey := func(k string) {
		b.eval(`(() => { document.getElementById("key").value = `+js(k)+`; document.getElementById("key-form").requestSubmit(); })()`, nil)
	}
	submitKey("wrong")
	b.wait("the key to be refused", `document.getElementById("key-dialog").open && document.getElementById("key-error").textContent.includes("refused")`, 20*time.Second)
	submitKey(apiKey)
	b.wait("the model name", `document.getElementById("model").textContent === "fmoe-tiny-chat"`, 20*time.Second)
	b.wait("the live view", `document.getElementById("live-state").textContent === "on"`, 20*time.Second)
	b.checkClean("loading")

	// Settings: greedy, the example tools.
	tools, err := os.ReadFile(filepath.Join(root, "models/fmoe-tiny-chat/tools.json"))
	if err != nil {
		t.Fatal(err)
	}
	b.eval(`(() => {
		document.getElementById("toggle-settings").click();
		document.getElementById("temperature").value = "0";
		document.getElementById("system").value = "You are a helpful assistant.";
		document.getElementById("tools").value = `+js(string(tools))+`;
	})()`, nil)
	b.screenshot("1-settings.png")
	b.eval(`document.getElementById("toggle-settings").click()`, nil)

	send := func(text string) {
		b.eval(`(() => { const i = document.getElementById("input"); i.value = `+js(text)+`; document.getElementById("composer").requestSubmit(); })()`, nil)
	}
	const last = `[...document.querySelectorAll(".msg.assistant")].at(-1)`
	idle := `document.getElementById("stop").hidden && !document.querySelector(".cursor")`

	// 1. The weather question: the model calls get_weather, shown as a call.
	send("What's the weather in Paris?")
	b.wait("the tool call", idle+` && `+last+`.querySelector(".call .name")?.textContent === "get_weather"`, 60*time.Second)
	var args string
	b.eval(last+`.querySelector(".call .args").textContent`, &args)
	var parsed map[string]any
	if err := json.Unmarshal([]byte(args), &parsed); err != nil || parsed["city"] != "Paris" {
		t.Errorf("the call's arguments show as %q", args)
	}
	b.screenshot("2-tool-call.png")
	// The request carried the settings.
	var req struct {
		Messages    []struct{ Role, Content string }
		Temperature *float64
		Tools       []any
		Stream      bool
	}
	if err := json.Unmarshal(px.lastBody(), &req); err != nil {
		t.Fatal(err)
	}
	if len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[0].Content != "You are a helpful assistant." ||
		req.Temperature == nil || *req.Temperature != 0 || len(req.Tools) != 2 || !req.Stream {
		t.Errorf("the page sent %s", px.lastBody())
	}

	// The user answers for the tool; the reply uses it, and most of the
	// prompt is reused from the session.
	b.eval(`(() => { const f = `+last+`.querySelector(".call form"); f.querySelector("input").value = '{"temp": 18, "condition": "sunny"}'; f.requestSubmit(); })()`, nil)
	b.wait("the reply to the tool result", idle+` && document.querySelectorAll(".msg.assistant").length === 2 && `+last+`.querySelector(".metrics").textContent.includes("reused")`, 60*time.Second)
	var reply, metrics string
	b.eval(last+`.querySelector(".body").textContent`, &reply)
	b.eval(last+`.querySelector(".metrics").textContent`, &metrics)
	if !strings.Contains(reply, "18") {
		t.Errorf("reply to the tool result: %q", reply)
	}
	if m := regexp.MustCompile(`(\d+) reused`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Errorf("metrics %q: no tokens reused from the previous turn", metrics)
	}

	// 2. A plain question, streamed: the reply grows over several paints.
	b.eval(`(() => {
		window.__paints = [];
		new MutationObserver(() => {
			const m = `+last+`;
			if (m) window.__paints.push(m.querySelector(".body").textContent.length);
		}).observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true});
	})()`, nil)
	send("Count from 5 to 12.")
	b.wait("the answer", idle+` && document.querySelectorAll(".msg.assistant").length === 3`, 60*time.Second)
	b.eval(last+`.querySelector(".body").textContent`, &reply)
	b.eval(last+`.querySelector(".metrics").textContent`, &metrics)
	var paints []int
	b.eval(`[...new Set(window.__paints)].filter((n) => n > 0)`, &paints)
	if reply != "5, 6, 7, 8, 9, 10, 11, 12." {
		t.Errorf("answer %q", reply)
	}
	if len(paints) < 3 {
		t.Errorf("the answer appeared in %d distinct lengths %v, want a stream of at least 3", len(paints), paints)
	}
	for _, want := range []string{"first token", "prompt", "reply", "tok/s", "reused"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics %q lack %q", metrics, want)
		}
	}
	// The live view saw the steps: time split, bytes read, a heat map.
	var live struct {
		Steps  string
		Bytes  string
		Page   string
		Bright int
	}
	b.eval(`(() => {
		const c = document.getElementById("heat"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		let bright = 0;
		for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 150) bright++;
		return {steps: document.body.dataset.liveSteps, bytes: document.getElementById("s-bytes").textContent,
			page: document.getElementById("s-page").textContent, bright};
	})()`, &live)
	if live.Steps == "" || live.Steps == "0" || live.Bytes == "–" || live.Page == "–" || live.Bright < 8 {
		t.Errorf("live view %+v: no steps drawn", live)
	}
	b.screenshot("3-answer.png")
	b.checkClean("chat")

	// 3. Stop mid-reply: the tiny model's replies end within a few dozen
	// tokens, so the proxy asks this one to ignore end-of-turn; the stop
	// button aborts the fetch and the server cancels the generation.
	b.eval(`document.getElementById("new-chat").click()`, nil)
	var left int
	b.eval(`document.querySelectorAll(".msg").length`, &left)
	if left != 0 {
		t.Errorf("%d messages after New chat", left)
	}
	px.ignoreEOS.Store(true)
	b.eval(`document.getElementById("max-tokens").value = "4000"`, nil)
	send("Count from 1 to 1000.")
	b.wait("the reply to start", `!document.getElementById("stop").hidden && (`+last+`?.querySelector(".body").textContent.length || 0) > 40`, 60*time.Second)
	// The live view moves while the reply streams.
	var before int
	b.eval(`+document.body.dataset.liveSteps`, &before)
	b.wait("the live view to update mid-reply", `!document.getElementById("stop").hidden && +document.body.dataset.liveSteps > `+fmt.Sprint(before+5), 20*time.Second)
	b.eval(`document.getElementById("stop").click()`, nil)
	b.wait("the stop", idle+` && `+last+`.querySelector(".metrics .stopped")`, 20*time.Second)
	px.ignoreEOS.Store(false)
	b.eval(`document.getElementById("max-tokens").value = "1024"`, nil)
	b.screenshot("4-stopped.png")
	// The server logs the generation as cancelled, well short of 4000.
	cancelled := regexp.MustCompile(`(\d+) generated in [0-9.]+s, cancelled`)
	deadline := time.Now().Add(10 * time.Second)
	for cancelled.FindStringSubmatch(log.String()) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m := cancelled.FindStringSubmatch(log.String()); m == nil {
		t.Errorf("the server did not log a cancelled generation:\n%s", log.String())
	} else if n := atoi(m[1]); n >= 4000 {
		t.Errorf("cancelled after %d tokens", n)
	}

	// 4. Hostile output: markup in the content, the reasoning and a tool
	// call stays text, and nothing of it runs.
	b.eval(`document.getElementById("new-chat").click()`, nil)
	send(hostile)
	b.wait("the made-up reply", idle+` && `+last+`?.querySelector(".metrics").textContent.includes("reply")`, 30*time.Second)
	var got struct {
		Pwned    bool
		Elements int
		Links    []string
		Text     string
		Reason   string
		Call     string
		Strong   int
		Code     string
	}
	b.eval(`(() => {
		const m = `+last+`;
		return {pwned: window.__pwned !== undefined,
			elements: document.querySelectorAll("#messages script, #messages img, #messages iframe, #messages svg, #messages [onerror], #messages [onclick]").length,
			links: [...m.querySelectorAll("a")].map((a) => a.href),
			text: m.querySelector(".body").textContent,
			reason: m.querySelector(".reasoning .text").textContent,
			call: m.querySelector(".call").textContent,
			strong: m.querySelectorAll(".body strong").length,
			code: m.querySelector(".body pre code")?.textContent || ""};
	})()`, &got)
	if got.Pwned || got.Elements != 0 {
		t.Errorf("markup from the model ran or became elements: pwned %v, %d elements", got.Pwned, got.Elements)
	}
	for _, l := range got.Links {
		if !strings.HasPrefix(l, "https://") {
			t.Errorf("a link to %q", l)
		}
	}
	for _, want := range []string{`<script>window.__pwned=1</script>`, `<img src=x onerror="window.__pwned=2">`} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("the reply does not show %q as text: %q", want, got.Text)
		}
	}
	if !strings.Contains(got.Reason, `<img src=x onerror=window.__pwned=3>`) || !strings.Contains(got.Call, `<svg onload=window.__pwned=4>`) ||
		!strings.Contains(got.Call, `<script>window.__pwned=5</script>`) || got.Strong != 1 || got.Code != "<script>window.__pwned=6</script>" {
		t.Errorf("hostile reply rendered as %+v", got)
	}
	var open bool
	b.eval(last+`.querySelector(".reasoning").open`, &open)
	if open {
		t.Error("the reasoning is not collapsed")
	}
	b.eval(`document.querySelector(".reasoning").open = true`, nil)
	b.screenshot("5-hostile.png")
	b.checkClean("hostile output")

	// 5. The Markdown renderer itself, case by case.
	cases := [][2]string{
		{"# Title\ntext", `<h2>Title</h2><p>text</p>`},
		{"a **b** *c* `d` ~~e~~", `<p>a <strong>b</strong> <em>c</em> <code>d</code> <del>e</del></p>`},
		{"snake_case_name, `__init__` and 2*3*4", `<p>snake_case_name, <code>__init__</code> and 2<em>3</em>4</p>`},
		{"a | b\n---", `<p>a | b</p><hr>`},
		{"line one\nline two\n\nnext", `<p>line one<br>line two</p><p>next</p>`},
		{"- one\n- two\n\n3. x\n4. y", `<ul><li>one</li><li>two</li></ul><ol start="3"><li>x</li><li>y</li></ol>`},
		{"| a | b |\n|---|:-:|\n| 1 | <i>2</i> |", `<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;i&gt;2&lt;/i&gt;</td></tr></tbody></table>`},
		{"> quoted *text*", `<blockquote><p>quoted <em>text</em></p></blockquote>`},
		{"---", `<hr>`},
		{"```go\nfmt.Println(\"<b>\")", `<pre><span class="lang">go</span><code class="language-go">fmt.Println("&lt;b&gt;")</code></pre>`},
		{"[x](https://a.example/) [y](javascript:alert(1))", `<p><a href="https://a.example/" target="_blank" rel="noopener noreferrer nofollow">x</a> [y](javascript:alert(1))</p>`},
		{"<b onclick=\"x()\">hi</b>", `<p>&lt;b onclick="x()"&gt;hi&lt;/b&gt;</p>`},
	}
	for _, c := range cases {
		var got string
		b.eval(`import("/ui/md.js").then((md) => { const d = document.createElement("div"); md.render(d, `+js(c[0])+`); return d.innerHTML; })`, &got)
		if got != c[1] {
			t.Errorf("Markdown %q:\n got %s\nwant %s", c[0], got, c[1])
		}
	}
	b.checkClean("markdown")
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func findChromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (Debian: apt-get install chromium); the browser test needs one")
	return ""
}

// fmoeRun is FMOE_UI_BIN, or fmoe-run built for the test.
func fmoeRun(t *testing.T) string {
	if p := os.Getenv("FMOE_UI_BIN"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "fmoe-run")
	cmd := exec.Command("go", "build", "-o", p, "../../cmd/fmoe-run")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return p
}

// packedModel is FMOE_UI_MODEL, or the built-in model packed for the test.
func packedModel(t *testing.T) string {
	if p := os.Getenv("FMOE_UI_MODEL"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "fmoe-tiny-chat")
	if _, err := pack.Convert(context.Background(), pack.Options{In: filepath.Join(root, "models/fmoe-tiny-chat/mlx-4bit"), Out: out}); err != nil {
		t.Fatal(err)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs fmoe-run serve with the API key on a free port and
// returns its address and its log.
func startServe(t *testing.T, bin, model string) (string, *syncBuffer) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--model", model, "--name", "fmoe-tiny-chat", "--addr", addr)
	cmd.Env = append(os.Environ(), "FMOE_API_KEY="+apiKey)
	log := &syncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(log.String(), "serving "); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("fmoe-run serve exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fmoe-run serve did not start:\n%s", log.String())
		}
	}
	return addr, log
}

// proxy stands between the browser and the server: it passes everything
// on, but answers the hostile message itself, and can ask the server to
// ignore end-of-turn.
type proxy struct {
	srv       *httptest.Server
	ignoreEOS atomic.Bool
	mu        sync.Mutex
	last      []byte // the last chat request's body
}

func (p *proxy) lastBody() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func newProxy(t *testing.T, addr string) *proxy {
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	rp.FlushInterval = -1
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/v1/chat/completions" {
			body, _ := io.ReadAll(r.Body)
			p.mu.Lock()
			p.last = body
			p.mu.Unlock()
			if bytes.Contains(body, []byte(hostile)) {
				hostileReply(w)
				return
			}
			if p.ignoreEOS.Load() {
				var m map[string]any
				json.Unmarshal(body, &m)
				m["ignore_eos"] = true
				body, _ = json.Marshal(m)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// hostileReply streams a reply whose every part carries markup.
func hostileReply(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(delta map[string]any) {
		c := map[string]any{"object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": delta}}}
		b, _ := json.Marshal(c)
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
	}
	chunk(map[string]any{"reasoning_content": "Thinking <img src=x onerror=window.__pwned=3> about it."})
	for _, s := range []string{
		"Here is markup: <script>window.__pwned=1</script> and ",
		`<img src=x onerror="window.__pwned=2">, in **bold**, `,
		"a [bad link](javascript:window.__pwned=7), a [good one](https://example.com/) and code:\n\n",
		"```html\n<script>window.__pwned=6</script>\n```\n",
	} {
		chunk(map[string]any{"content": s})
	}
	chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "id": "call_1", "type": "function",
		"function": map[string]any{"name": "<svg onload=window.__pwned=4>", "arguments": `{"x": "<script>window.__pwned=5</script>"}`}}}})
	c := map[string]any{"object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "tool_calls"}}}
	b, _ := json.Marshal(c)
	fmt.Fprintf(w, "data: %s\n\n", b)
	b, _ = json.Marshal(map[string]any{"object": "chat.completion.chunk", "choices": []any{},
		"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "prompt_tokens_details": map[string]any{"cached_tokens": 0}}})
	fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", b)
}
