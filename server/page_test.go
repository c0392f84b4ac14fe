package server

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/server/web"
)

// TestPage: GET / is the chat page under a strict Content-Security-Policy,
// and every file it loads is served from the binary with a type browsers
// accept for it, and revalidates by ETag.
func TestPage(t *testing.T) {
	_, _, url := start(t, nil)
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, h.Get("Content-Type"))
	}
	if got := h.Get("Content-Security-Policy"); got != web.CSP {
		t.Errorf("CSP %q, want %q", got, web.CSP)
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(web.CSP, want) {
			t.Errorf("the CSP lacks %q", want)
		}
	}
	if strings.Contains(web.CSP, "unsafe") || strings.Contains(web.CSP, "*") {
		t.Errorf("the CSP allows too much: %q", web.CSP)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("ETag") == "" {
		t.Errorf("headers %v", h)
	}
	page := string(web.Lookup(web.Index).Body)
	refs := regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 2 {
		t.Errorf("the page loads %v", refs)
	}
	for _, ref := range refs {
		r, err := http.Get(url + ref[1])
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		ct := r.Header.Get("Content-Type")
		if r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") != web.CSP ||
			strings.HasSuffix(ref[1], ".js") && !strings.HasPrefix(ct, "text/javascript") ||
			strings.HasSuffix(ref[1], ".css") && !strings.HasPrefix(ct, "text/css") {
			t.Errorf("GET %s: %d %q", ref[1], r.StatusCode, ct)
		}
	}
	req, _ := http.NewRequest("GET", url+"/ui/app.js", nil)
	req.Header.Set("If-None-Match", web.Lookup("app.js").ETag)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusNotModified {
		t.Errorf("GET /ui/app.js with its ETag: %v %v", r.StatusCode, err)
	}
	for _, path := range []string{"/ui/nope.js", "/ui/index.html", "/ui/", "/index.html"} {
		if status, body := do(t, "GET", url+path, ""); status != http.StatusNotFound {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
}

// TestPageSource keeps the page within its CSP and its rule for model
// output: no inline script, style or event handler, and no API that parses
// a string as HTML or code. Model text reaches the DOM only as text.
func TestPageSource(t *testing.T) {
	html := string(web.Lookup(web.Index).Body)
	for _, re := range []string{`<script(?:\s+type="module")?>`, `<script[^>]*>[^<]`, `<style`, `\sstyle=`, `\son[a-z]+=`, `javascript:`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("index.html has %q, which the CSP forbids", m)
		}
	}
	banned := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*["'](?:on|style|href|src)|DOMParser|createContextualFragment|srcdoc`)
	imports := regexp.MustCompile(`from\s+"\./([\w.]+)"`)
	n := 0
	for _, name := range web.Names() {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		n++
		src := string(web.Lookup(name).Body)
		if m := banned.FindString(src); m != "" {
			t.Errorf("%s uses %s", name, m)
		}
		for _, m := range imports.FindAllStringSubmatch(src, -1) {
			if web.Lookup(m[1]) == nil {
				t.Errorf("%s imports %s, which is not embedded", name, m[1])
			}
		}
	}
	if n < 3 {
		t.Errorf("%d scripts embedded: %v", n, web.Names())
	}
	total := 0
	for _, name := range web.Names() {
		total += len(web.Lookup(name).Body)
	}
	if total > 96<<10 {
		t.Errorf("the page is %d bytes; keep it small", total)
	}
}

// TestPageAuth: with an API key the page and its files need none (they
// ask for it), while the stats stream, like the API, does.
func TestPageAuth(t *testing.T) {
	_, _, url := start(t, New(engine, Options{Name: "fmoe-tiny-chat", APIKey: "k3y"}))
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		if status, _ := do(t, "GET", url+path, ""); status != 200 {
			t.Errorf("GET %s without a key: %d", path, status)
		}
	}
	for _, r := range [][2]string{{"GET", "/v1/fmoe/stats"}, {"POST", "/"}, {"POST", "/ui/app.js"}, {"GET", "/v1/models"}} {
		if status, body := do(t, r[0], url+r[1], ""); status != http.StatusUnauthorized {
			t.Errorf("%s %s without a key: %d %s", r[0], r[1], status, body)
		}
	}
	req, _ := http.NewRequest("GET", url+"/v1/fmoe/stats", nil)
	req.Header.Set("Authorization", "Bearer k3y")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("stats with the key: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
