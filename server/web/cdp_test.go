//go:build uitest

package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// browser drives a headless Chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe: Chromium reads commands on fd 3 and writes
// replies and events on fd 4, each message JSON ended by a NUL byte), so
// no WebSocket library is needed.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     *os.File // our end of Chromium's fd 3
	session string   // the page's flat session

	mu      sync.Mutex
	next    int
	pending map[int]chan cdpMsg
	// problems are script exceptions and security (CSP) messages.
	problems []string
}

type cdpMsg struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct{ Message string }
	SessionID string `json:"sessionId,omitempty"`
}

func startBrowser(t *testing.T, bin string, width, height int) *browser {
	t.Helper()
	cmdR, cmdW, err := os.Pipe() // commands: we write, Chromium reads (fd 3)
	if err != nil {
		t.Fatal(err)
	}
	evR, evW, err := os.Pipe() // replies: Chromium writes (fd 4), we read
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile while the test's own cleanup runs.
	profile, err := os.MkdirTemp("", "fmoe-ui-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
		"--user-data-dir="+profile, "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-sync", "--hide-scrollbars", "--mute-audio",
		"--force-color-profile=srgb", "--lang=en-US", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, evW}
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	cmdR.Close()
	evW.Close()
	b := &browser{t: t, cmd: cmd, out: cmdW, pending: map[int]chan cdpMsg{}}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// Closing the pipe asks Chromium to quit; it takes its helpers
		// with it.
		cmdW.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	go b.read(evR)
	var target struct{ TargetID string }
	b.callSession("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct{ SessionID string }
	b.callSession("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	b.session = att.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.call(m, nil, nil)
	}
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	return b
}

func (b *browser) read(r *os.File) {
	br := bufio.NewReader(r)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMsg
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if ch, ok := b.pending[m.ID]; ok && m.ID != 0 {
			delete(b.pending, m.ID)
			ch <- m
		} else {
			b.event(m)
		}
		b.mu.Unlock()
	}
}

// event records what would show as an error in the page's console: an
// uncaught exception or a security (CSP) message. Called with mu held.
func (b *browser) event(m cdpMsg) {
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		json.Unmarshal(m.Params, &p)
		b.problems = append(b.problems, "exception: "+p.ExceptionDetails.Text+" "+p.ExceptionDetails.Exception.Description)
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Source, Level, Text string }
		}
		json.Unmarshal(m.Params, &p)
		if p.Entry.Source == "security" || p.Entry.Source == "javascript" {
			b.problems = append(b.problems, p.Entry.Source+": "+p.Entry.Text)
		}
	}
}

func (b *browser) call(method string, params, result any) {
	b.t.Helper()
	b.callSession(b.session, method, params, result)
}

func (b *browser) callSession(session, method string, params, result any) {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpMsg, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": orEmpty(params), "sessionId": session})
	if session == "" {
		msg, _ = json.Marshal(map[string]any{"id": id, "method": method, "params": orEmpty(params)})
	}
	if _, err := b.out.Write(append(msg, 0)); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			b.t.Fatalf("%s: the browser went away", method)
		}
		if m.Error != nil {
			b.t.Fatalf("%s: %s", method, m.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				b.t.Fatalf("%s: %v in %s", method, err, m.Result)
			}
		}
	case <-time.After(60 * time.Second):
		b.t.Fatalf("%s: no reply within 60 s", method)
	}
}

func orEmpty(p any) any {
	if p == nil {
		return map[string]any{}
	}
	return p
}

// eval runs a JavaScript expression in the page (awaiting a promise) and
// stores its JSON value in out (when not nil).
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if r.ExceptionDetails != nil {
		b.t.Fatalf("eval %s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("eval %s: %v (%s)", expr, err, r.Result.Value)
		}
	}
}

// wait polls a JavaScript condition until it is true.
func (b *browser) wait(what, cond string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		var ok bool
		b.eval("!!("+cond+")", &ok)
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			b.screenshot("timeout.png")
			b.t.Fatalf("timed out after %v waiting for %s (%s)", timeout, what, cond)
		case <-time.After(40 * time.Millisecond):
		}
	}
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	b.call("Page.navigate", map[string]any{"url": url}, nil)
	b.wait("the page to load", `document.readyState === "complete"`, 30*time.Second)
}

// screenshot writes the page as shots/name.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	path := filepath.Join(shots, name)
	var r struct{ Data string }
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

// checkClean fails the test for any exception or CSP report so far.
func (b *browser) checkClean(step string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Errorf("%s: the page reported:\n%s", step, strings.Join(b.problems, "\n"))
		b.problems = nil
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
