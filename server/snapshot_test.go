package server

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go"
)

// TestNewUserTurnReusesPrompt: a second user turn does not continue the
// session (the template re-renders the first reply without its reasoning),
// but it does continue the first prompt up to its generation prompt, whose
// state the engine kept: those tokens come back as cached_tokens.
func TestNewUserTurnReusesPrompt(t *testing.T) {
	_, c, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := params("Count from 5 to 12.", false)
	resp, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	p.Messages = append(p.Messages, resp.Choices[0].Message.ToParam(), openai.UserMessage("Count from 1 to 3."))
	resp2, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	genPrompt := int64(len(engine.Tok.Encode("<|im_start|>assistant\n<think>\n")))
	if got, want := resp2.Usage.PromptTokensDetails.CachedTokens, resp.Usage.PromptTokens-genPrompt; got != want {
		t.Errorf("cached %d of %d prompt tokens, want %d (the first prompt less its generation prompt)", got, resp2.Usage.PromptTokens, want)
	}
	if got := resp2.Choices[0].Message.Content; got != "1, 2, 3." {
		t.Errorf("second turn %q", got)
	}
}
