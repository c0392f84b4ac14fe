package convo

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
)

// TestNewQuestionAfterToolsReusesQuery: after a tool exchange, a new user
// question re-renders the tool call without its reasoning, so neither the
// session nor the generation-prompt snapshot (taken after the tool result)
// prefixes it; the snapshot at the end of the previous user query does, and
// the turn computed from it equals the same prompt computed from scratch,
// token for token and logit for logit.
func TestNewQuestionAfterToolsReusesQuery(t *testing.T) {
	ctx := context.Background()
	engine.Reset()
	tools := []chat.Tool{{Type: "function", Function: chat.ToolFunction{Name: "get_time", Description: "The current time in a city.",
		Parameters: []byte(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}}}
	render := func(msgs ...chat.Message) string {
		s, err := engine.Template.Render(msgs, tools, chat.RenderOptions{AddGenerationPrompt: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sys := chat.Message{Role: "system", Content: "You are a helpful assistant."}
	u1 := chat.Message{Role: "user", Content: "What time is it in Paris?"}
	call := chat.Message{Role: "assistant", ReasoningContent: "The user wants the time in Paris; I should call get_time.",
		ToolCalls: []chat.ToolCall{{ID: "c1", Type: "function", Function: chat.FunctionCall{Name: "get_time", Arguments: `{"city":"Paris"}`}}}}
	result := chat.Message{Role: "tool", ToolCallID: "c1", Content: `{"time":"14:05"}`}
	answer := chat.Message{Role: "assistant", ReasoningContent: "The tool says 14:05.", Content: "It is 14:05 in Paris."}
	u2 := chat.Message{Role: "user", Content: "Count from 5 to 12."}

	p1 := render(sys, u1)
	r1, err := engine.Generate(ctx, p1, Options{MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	genPrompt := len(engine.Tok.Encode("<|im_start|>assistant\n<think>\n"))
	query := r1.PromptTokens - genPrompt
	p2 := render(sys, u1, call, result)
	r2, err := engine.Generate(ctx, p2, Options{MaxTokens: 8})
	if err != nil || r2.ReusedTokens != query {
		t.Fatalf("tool result turn reused %d tokens, want %d (%v)", r2.ReusedTokens, query, err)
	}
	p3 := render(sys, u1, call, result, answer, u2)
	if strings.HasPrefix(p3, p2[:len(p2)-len("<|im_start|>assistant\n<think>\n")]) {
		t.Fatal("the template kept the tool call's reasoning: this test needs one that drops it")
	}
	var logits [][]float32
	keep := func(_ string, l []float32) { logits = append(logits, slices.Clone(l)) }
	r3, err := engine.Generate(ctx, p3, Options{MaxTokens: 24, Logits: keep})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new question: %d of %d prompt tokens reused", r3.ReusedTokens, r3.PromptTokens)
	if r3.ReusedTokens != query {
		t.Fatalf("new question reused %d tokens, want the %d up to the end of the first query", r3.ReusedTokens, query)
	}
	got := logits
	logits = nil

	// The next exchange moves both snapshots on: a question after it
	// reuses everything up to the end of u2.
	call2 := call
	call2.ReasoningContent = "Another call."
	p4 := render(sys, u1, call, result, answer, u2, call2, result)
	if r4, err := engine.Generate(ctx, p4, Options{MaxTokens: 8}); err != nil || r4.ReusedTokens != r3.PromptTokens-genPrompt {
		t.Fatalf("second tool result turn reused %d tokens, want %d (%v)", r4.ReusedTokens, r3.PromptTokens-genPrompt, err)
	}
	p5 := render(sys, u1, call, result, answer, u2, call2, result, answer, u1)
	if r5, err := engine.Generate(ctx, p5, Options{MaxTokens: 8}); err != nil || r5.ReusedTokens != r3.PromptTokens-genPrompt {
		t.Fatalf("second new question reused %d tokens, want %d (%v)", r5.ReusedTokens, r3.PromptTokens-genPrompt, err)
	}
	engine.Reset()
	scratch, err := engine.Generate(ctx, p3, Options{MaxTokens: 24, Logits: keep})
	if err != nil || scratch.ReusedTokens != 0 {
		t.Fatalf("from scratch: reused %d (%v)", scratch.ReusedTokens, err)
	}
	if !slices.Equal(r3.IDs, scratch.IDs) {
		t.Fatalf("from the query snapshot %v, from scratch %v", r3.IDs, scratch.IDs)
	}
	if len(got) != len(logits) || len(got) == 0 {
		t.Fatalf("%d steps of logits, from scratch %d", len(got), len(logits))
	}
	// A prefill fed in other parts rounds differently (by ~2e-6 here), so
	// the restored state is checked exactly against a session fed in the
	// same parts as the snapshots split it, and the whole turn against the
	// from-scratch one within float32 rounding.
	ids := engine.Tok.Encode(p3)
	gen := len(ids) - genPrompt
	if parts := forwardParts(t, ids, query, gen); !slices.Equal(parts, got[0]) {
		t.Fatalf("the first logits from the query snapshot differ from a session fed the same parts (max %g)", maxDiff(parts, got[0]))
	}
	worst := 0.0
	for i := range got {
		worst = max(worst, maxDiff(got[i], logits[i]))
	}
	t.Logf("logits from the snapshot vs from scratch: max difference %g over %d steps", worst, len(got))
	if worst > 1e-4 {
		t.Fatalf("logits differ from scratch by %g", worst)
	}
}

// forwardParts feeds ids to the engine's emptied session in parts cut at
// cuts and returns the last logits.
func forwardParts(t *testing.T, ids []int, cuts ...int) []float32 {
	t.Helper()
	if err := engine.Reset(); err != nil {
		t.Fatal(err)
	}
	var lg []float32
	prev := 0
	for _, c := range append(cuts, len(ids)) {
		var err error
		if lg, err = engine.sess.ForwardContext(context.Background(), ids[prev:c]); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
	return slices.Clone(lg)
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// TestToolResultContinuingSession: when the tool result turn continues the
// session (the client sent the tool call back as generated), the snapshot at
// the end of the query is kept all the same, so the next question reuses it.
func TestToolResultContinuingSession(t *testing.T) {
	ctx := context.Background()
	engine.Reset()
	u1 := chat.Message{Role: "user", Content: "What time is it in Paris?"}
	p1 := render(t, u1)
	r1, err := engine.Generate(ctx, p1, Options{MaxTokens: 16})
	if err != nil || r1.Finish != FinishStop {
		t.Fatalf("first reply %+v %v", r1, err)
	}
	query := r1.PromptTokens - len(engine.Tok.Encode("<|im_start|>assistant\n<think>\n"))
	held := len(engine.History())
	p2 := p1 + r1.Text + "<|im_end|>\n<|im_start|>user\n<tool_response>\n14:05\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n"
	if r2, err := engine.Generate(ctx, p2, Options{MaxTokens: 8}); err != nil || r2.ReusedTokens != held {
		t.Fatalf("tool result turn reused %d tokens, want the session's %d (%v)", r2.ReusedTokens, held, err)
	}
	p3 := render(t, u1, chat.Message{Role: "assistant", Content: "It is 14:05."}, chat.Message{Role: "user", Content: "And in Rome?"})
	r3, err := engine.Generate(ctx, p3, Options{MaxTokens: 8})
	if err != nil || r3.ReusedTokens != query {
		t.Fatalf("new question reused %d tokens, want %d (%v)", r3.ReusedTokens, query, err)
	}
}
