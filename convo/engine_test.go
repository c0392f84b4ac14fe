package convo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/model"
)

var engine *Engine

func TestMain(m *testing.M) {
	root, err := os.MkdirTemp("", "fmoe-convo-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(root)
		dir := filepath.Join(root, "tiny")
		if _, err := pack.Convert(context.Background(), pack.Options{In: "../models/fmoe-tiny-chat/mlx-4bit", Out: dir}); err != nil {
			fmt.Fprintln(os.Stderr, "pack:", err)
			return 1
		}
		if engine, err = Open(dir, model.Options{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer engine.Close()
		return m.Run()
	}()
	os.Exit(code)
}

func render(t *testing.T, msgs ...chat.Message) string {
	t.Helper()
	s, err := engine.Template.Render(msgs, nil, chat.RenderOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContinuationReusesSession(t *testing.T) {
	ctx := context.Background()
	engine.Reset()
	u1 := chat.Message{Role: "user", Content: "Count from 5 to 12."}
	p1 := render(t, u1)
	r1, err := engine.Generate(ctx, p1, Options{MaxTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Finish != FinishStop || !strings.HasSuffix(r1.Text, "5, 6, 7, 8, 9, 10, 11, 12.") || r1.ReusedTokens != 0 {
		t.Fatalf("first reply %+v", r1)
	}
	// The history is the prompt and the reply without its end token.
	if len(engine.History()) != r1.PromptTokens+len(r1.IDs)-1 {
		t.Errorf("history %d tokens, want %d", len(engine.History()), r1.PromptTokens+len(r1.IDs)-1)
	}
	// A prompt that extends prompt+reply reuses all of it.
	p2 := p1 + r1.Text + "<|im_end|>\n<|im_start|>user\nCount from 1 to 3.<|im_end|>\n<|im_start|>assistant\n<think>\n"
	held := len(engine.History())
	feed, reused := engine.Plan(p2)
	if reused != held || len(feed) == 0 || len(feed) > 30 {
		t.Fatalf("plan reused %d of %d, feeds %d", reused, held, len(feed))
	}
	r2, err := engine.Generate(ctx, p2, Options{MaxTokens: 64})
	if err != nil || r2.ReusedTokens != held {
		t.Fatalf("continuation %+v %v", r2, err)
	}
	// The same tokens computed from scratch give the same reply.
	engine.Reset()
	r3, err := engine.Generate(ctx, p2, Options{MaxTokens: 64})
	if err != nil || r3.Text != r2.Text || r3.ReusedTokens != 0 {
		t.Errorf("from scratch %q, continued %q (%v)", r3.Text, r2.Text, err)
	}
	// Anything else starts over.
	if _, reused := engine.Plan(render(t, chat.Message{Role: "user", Content: "Hi there"})); reused != 0 {
		t.Errorf("an unrelated prompt reuses %d tokens", reused)
	}
	if _, reused := engine.Plan(p1); reused != 0 {
		t.Errorf("a prefix of the history reuses %d tokens", reused)
	}
}

func TestGenerateLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := render(t, chat.Message{Role: "user", Content: "Count from 5 to 12."})
	r, err := engine.Generate(ctx, p, Options{MaxTokens: 3})
	if err != nil || r.Finish != FinishLength || len(r.IDs) != 3 {
		t.Fatalf("max 3: %+v %v", r, err)
	}
	n := 0
	r, err = engine.Generate(ctx, p, Options{OnText: func(string) bool { n++; return n < 2 }})
	if err != nil || r.Finish != FinishCaller || n != 2 {
		t.Fatalf("caller stop: %+v %v", r, err)
	}
	cancel()
	r, err = engine.Generate(ctx, p, Options{})
	if err != nil || r.Finish != FinishCancelled {
		t.Fatalf("cancelled: %+v %v", r, err)
	}
	long := strings.Repeat("word ", engine.MaxContext()+10)
	if _, err := engine.Generate(context.Background(), long, Options{}); !errors.Is(err, ErrContext) {
		t.Fatalf("an over-long prompt: %v", err)
	}
	r, err = engine.Generate(context.Background(), p, Options{MaxTokens: 64})
	if err != nil || !strings.HasSuffix(r.Text, "12.") {
		t.Fatalf("after the errors: %+v %v", r, err)
	}
}

// TestNewTurnRestoresSnapshot: the next user turn re-renders the first
// reply without its reasoning, so it does not continue the session; it does
// continue the first prompt up to its generation prompt, which the engine
// snapshotted, and the reply equals the one computed from scratch.
func TestNewTurnRestoresSnapshot(t *testing.T) {
	ctx := context.Background()
	engine.Reset()
	u1 := chat.Message{Role: "user", Content: "Count from 5 to 12."}
	p1 := render(t, u1)
	r1, err := engine.Generate(ctx, p1, Options{MaxTokens: 64})
	if err != nil || r1.Finish != FinishStop || !strings.Contains(r1.Text, "</think>") {
		t.Fatalf("first reply %+v %v", r1, err)
	}
	genPrompt := len(engine.Tok.Encode("<|im_start|>assistant\n<think>\n"))
	p2 := render(t, u1, chat.Message{Role: "assistant", Content: r1.Text}, chat.Message{Role: "user", Content: "Count from 1 to 3."})
	if strings.HasPrefix(p2, p1) {
		t.Fatal("the template kept the reasoning: this test needs one that drops it")
	}
	_, reused := engine.Plan(p2)
	if want := r1.PromptTokens - genPrompt; reused != want {
		t.Fatalf("plan reuses %d tokens, want the %d before the generation prompt", reused, want)
	}
	r2, err := engine.Generate(ctx, p2, Options{MaxTokens: 64})
	if err != nil || r2.ReusedTokens != reused {
		t.Fatalf("second turn %+v %v", r2, err)
	}
	// A failed or cancelled request leaves the snapshot usable: the third
	// turn's is the second prompt's.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p3 := render(t, u1, chat.Message{Role: "assistant", Content: r1.Text}, chat.Message{Role: "user", Content: "Count from 1 to 3."},
		chat.Message{Role: "assistant", Content: r2.Text}, chat.Message{Role: "user", Content: "Count from 5 to 12."})
	if r, err := engine.Generate(cctx, p3, Options{}); err != nil || r.Finish != FinishCancelled {
		t.Fatalf("cancelled: %+v %v", r, err)
	}
	r3, err := engine.Generate(ctx, p3, Options{MaxTokens: 64})
	if err != nil || r3.ReusedTokens != r2.PromptTokens-genPrompt {
		t.Fatalf("third turn reused %d of %d (%v)", r3.ReusedTokens, r2.PromptTokens, err)
	}
	engine.Reset()
	scratch, err := engine.Generate(ctx, p2, Options{MaxTokens: 64})
	if err != nil || scratch.ReusedTokens != 0 || scratch.Text != r2.Text {
		t.Errorf("from scratch %q (reused %d), from the snapshot %q (%v)", scratch.Text, scratch.ReusedTokens, r2.Text, err)
	}
}

// TestCancelDuringPrefill: a context that ends inside a layer of the prompt
// stops the prefill before the next layer; the engine starts over cleanly.
func TestCancelDuringPrefill(t *testing.T) {
	engine.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	layers := 0
	engine.sess.Capture = func(name string, T int, h []float32) {
		if strings.HasPrefix(name, "layer") {
			layers++
			cancel()
		}
	}
	p := render(t, chat.Message{Role: "user", Content: "Count from 5 to 12."})
	r, err := engine.Generate(ctx, p, Options{MaxTokens: 64})
	engine.sess.Capture = nil
	if err != nil || r.Finish != FinishCancelled || layers != 1 || len(r.IDs) != 0 {
		t.Fatalf("cancelled after %d layers: %+v %v", layers, r, err)
	}
	if len(engine.History()) != 0 {
		t.Fatalf("a cancelled prefill left %d tokens of history", len(engine.History()))
	}
	r, err = engine.Generate(context.Background(), p, Options{MaxTokens: 64})
	if err != nil || !strings.HasSuffix(r.Text, "5, 6, 7, 8, 9, 10, 11, 12.") {
		t.Fatalf("after the cancel: %+v %v", r, err)
	}
}

// TestGreedyPickedOnDevice: a greedy reply picked where the logits are
// (no Logits hook: Session.ForwardGreedy) is the reply sampled from the
// logits read back (a hook that leaves them as they are), token for token,
// and the history records the same tokens either way.
func TestGreedyPickedOnDevice(t *testing.T) {
	ctx := context.Background()
	p := render(t, chat.Message{Role: "user", Content: "Count from 5 to 12."})
	engine.Reset()
	picked, err := engine.Generate(ctx, p, Options{MaxTokens: 40})
	if err != nil {
		t.Fatal(err)
	}
	pickedHist := slices.Clone(engine.History())
	engine.Reset()
	hooked := 0
	read, err := engine.Generate(ctx, p, Options{MaxTokens: 40, Logits: func(string, []float32) { hooked++ }})
	if err != nil {
		t.Fatal(err)
	}
	if hooked == 0 {
		t.Fatal("the Logits hook never ran: both replies took the device's pick")
	}
	if !slices.Equal(picked.IDs, read.IDs) || picked.Text != read.Text || !slices.Equal(pickedHist, engine.History()) {
		t.Fatalf("picked %v %q, from the logits %v %q", picked.IDs, picked.Text, read.IDs, read.Text)
	}
}
