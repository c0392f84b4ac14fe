package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/packages/param"
)

func TestPlainCompletion(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Chat.Completions.New(ctx, params("Count from 5 to 12.", false))
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	if got := ch.Message.Content; got != "5, 6, 7, 8, 9, 10, 11, 12." {
		t.Errorf("content %q", got)
	}
	if ch.FinishReason != "stop" || len(ch.Message.ToolCalls) != 0 {
		t.Errorf("finish %q, tool calls %v", ch.FinishReason, ch.Message.ToolCalls)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Model != "fmoe-tiny-chat" {
		t.Errorf("id %q object %q model %q", resp.ID, resp.Object, resp.Model)
	}
	u := resp.Usage
	if u.PromptTokens < 10 || u.CompletionTokens < 10 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", u)
	}
}

// TestToolCallAndContinuation is the acceptance case: the model
// itself answers "What's the weather in Paris?" with a get_weather call;
// sending the call's result back continues the same session.
func TestToolCallAndContinuation(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := params("What's the weather in Paris?", true)
	resp, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 {
		t.Fatalf("finish %q, message %s", ch.FinishReason, ch.Message.RawJSON())
	}
	call := ch.Message.ToolCalls[0]
	var args map[string]any
	if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil {
		t.Fatalf("arguments %q: %v", call.Function.Arguments, err)
	}
	if call.Function.Name != "get_weather" || len(args) != 1 || args["city"] != "Paris" || !strings.HasPrefix(call.ID, "call_") {
		t.Fatalf("call %s", call.RawJSON())
	}
	if ch.Message.Content != "" {
		t.Errorf("content %q beside the call", ch.Message.Content)
	}

	p.Messages = append(p.Messages, ch.Message.ToParam(), openai.ToolMessage(`{"temp": 18, "condition": "sunny"}`, call.ID))
	resp2, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	cached := resp2.Usage.PromptTokensDetails.CachedTokens
	// Everything up to the call's closing tag was in the session already.
	if want := resp.Usage.PromptTokens + resp.Usage.CompletionTokens - 1; cached != want {
		t.Errorf("cached %d prompt tokens of %d, want %d (the first request's prompt and reply)", cached, resp2.Usage.PromptTokens, want)
	}
	got := resp2.Choices[0].Message.Content
	if resp2.Choices[0].FinishReason != "stop" || !strings.Contains(got, "18") || !strings.Contains(got, "sunny") {
		t.Errorf("reply to the tool result: %q (%s)", got, resp2.Choices[0].FinishReason)
	}

	// A different conversation cannot reuse the session.
	resp3, err := c.Chat.Completions.New(ctx, params("Count from 1 to 3.", false))
	if err != nil {
		t.Fatal(err)
	}
	if n := resp3.Usage.PromptTokensDetails.CachedTokens; n != 0 {
		t.Errorf("an unrelated prompt reused %d tokens", n)
	}
}

func TestStreamedToolCall(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := params("What's the weather in Paris?", true)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, p)
	var acc openai.ChatCompletionAccumulator
	var finished []openai.FinishedChatCompletionToolCall
	chunks, deltas := 0, 0
	for stream.Next() {
		ch := stream.Current()
		chunks++
		if !acc.AddChunk(ch) {
			t.Fatalf("the accumulator rejected chunk %d: %s", chunks, ch.RawJSON())
		}
		if len(ch.Choices) > 0 {
			deltas += len(ch.Choices[0].Delta.ToolCalls)
		}
		if tc, ok := acc.JustFinishedToolCall(); ok {
			finished = append(finished, tc)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	msg := acc.Choices[0].Message
	if len(msg.ToolCalls) != 1 || acc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("accumulated %s", acc.RawJSON())
	}
	call := msg.ToolCalls[0]
	var args map[string]any
	if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil || call.Function.Name != "get_weather" || args["city"] != "Paris" {
		t.Fatalf("call %s %s (%v)", call.Function.Name, call.Function.Arguments, err)
	}
	if deltas < 2 {
		t.Errorf("the call came in %d deltas; want the name, then argument fragments", deltas)
	}
	if len(finished) != 1 || finished[0].Name != "get_weather" {
		t.Errorf("JustFinishedToolCall saw %+v", finished)
	}
	if acc.Usage.CompletionTokens == 0 || acc.Usage.PromptTokens < 100 {
		t.Errorf("usage %+v", acc.Usage)
	}
}

func TestStreamedText(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := c.Chat.Completions.NewStreaming(ctx, params("Count from 5 to 12.", false))
	var text strings.Builder
	pieces := 0
	finish := ""
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) == 0 {
			continue
		}
		if d := ch.Choices[0].Delta.Content; d != "" {
			text.WriteString(d)
			pieces++
		}
		if ch.Choices[0].FinishReason != "" {
			finish = ch.Choices[0].FinishReason
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "5, 6, 7, 8, 9, 10, 11, 12." || pieces < 5 || finish != "stop" {
		t.Errorf("streamed %q in %d pieces, finish %q", text.String(), pieces, finish)
	}
}

func TestSamplingOptions(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p := params("Count from 5 to 12.", false)
	p.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"zzz", ", 8"}}
	resp, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0]; got.Message.Content != "5, 6, 7" || got.FinishReason != "stop" {
		t.Errorf("with stop: %q, %q", got.Message.Content, got.FinishReason)
	}

	p = params("Count from 5 to 12.", false)
	p.MaxTokens = param.Opt[int64]{}
	p.MaxCompletionTokens = openai.Int(3)
	resp, err = c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0]; got.FinishReason != "length" || resp.Usage.CompletionTokens != 3 {
		t.Errorf("max_completion_tokens 3: finish %q, %d tokens", got.FinishReason, resp.Usage.CompletionTokens)
	}

	// Sampling with a seed is reproducible.
	var outs [2]string
	for i := range outs {
		p = params("Who are you?", false)
		p.Temperature, p.TopP, p.Seed = openai.Float(1.5), openai.Float(0.95), openai.Int(7)
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = resp.Choices[0].Message.Content
	}
	if outs[0] != outs[1] {
		t.Errorf("the same seed gave %q and %q", outs[0], outs[1])
	}
}

func TestToolChoice(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// none: the tools are not offered and no call comes back.
	p := params("What's the weather in Paris?", true)
	p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
	resp, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ch := resp.Choices[0]; len(ch.Message.ToolCalls) != 0 || ch.FinishReason == "tool_calls" || resp.Usage.PromptTokens > 100 {
		t.Errorf("tool_choice none: %s, %d prompt tokens", ch.RawJSON(), resp.Usage.PromptTokens)
	}

	// required: a greeting, which the model answers in text, must become a call.
	p = params("Hi there", true)
	p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
	resp, err = c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ch := resp.Choices[0]; len(ch.Message.ToolCalls) == 0 || ch.FinishReason != "tool_calls" {
		t.Errorf("tool_choice required: %s", ch.RawJSON())
	}

	// A named function is called even where the model would pick another.
	p = params("What's the weather in Paris?", true)
	p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{
		OfChatCompletionNamedToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
			Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "bash"},
		},
	}
	resp, err = c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ch := resp.Choices[0]; len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "bash" {
		t.Errorf("tool_choice bash: %s", ch.RawJSON())
	}

	p.ToolChoice.OfChatCompletionNamedToolChoice.Function.Name = "launch"
	_, err = c.Chat.Completions.New(ctx, p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "launch") {
		t.Errorf("an unknown function in tool_choice: %v", err)
	}
}

func TestModelsAndHealth(t *testing.T) {
	_, c, url := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "fmoe-tiny-chat" || page.Data[0].Object != "model" {
		t.Errorf("models %s", page.RawJSON())
	}
	m, err := c.Models.Get(ctx, "fmoe-tiny-chat")
	if err != nil || m.ID != "fmoe-tiny-chat" {
		t.Errorf("model: %v %v", m, err)
	}
	status, body := do(t, "GET", url+"/health", "")
	if status != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("health: %d %s", status, body)
	}
}
