package chatui

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/convo/convotest"
)

var engine *convo.Engine

// TestMain packs the built-in model once for the test binary.
func TestMain(m *testing.M) {
	convotest.Main(m, "../models/fmoe-tiny-chat/mlx-4bit", &engine)
}

var weather = chat.Tool{Type: "function", Function: chat.ToolFunction{
	Name:        "get_weather",
	Description: "Current weather for a city",
	Parameters:  []byte(`{"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}`),
}}

// run drives a chat through its input stream and returns the transcript.
func run(t *testing.T, c *Chat) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return c.out.(*bytes.Buffer).String()
}

func TestChatSession(t *testing.T) {
	input := strings.Join([]string{
		"What's the weather in Paris?",
		`{"temp": 18, "condition": "sunny"}`, // typed result of get_weather
		"/stats",
		"Count from 1 to 3.", // a second turn, appended to the session
		"/stats",
		"/reset",
		"show me bin", // the model calls bash…
		"n",           // …and the user declines
		"/reset",
		"Count from 5 to 12.",
		"/system You are terse.",
		"/bogus",
		"/exit",
		"never read",
	}, "\n") + "\n"
	var out bytes.Buffer
	ran := 0
	c, err := New(engine, NewPlainReader(strings.NewReader(input), &out, true), &out, Options{
		Tools:   []chat.Tool{weather},
		RunBash: func(context.Context, string) string { ran++; return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, c)
	t.Log(got)
	// The reply to the tool result and the second turn were appended to the
	// session: only their new tokens were fed.
	stats := regexp.MustCompile(`session: (\d+) tokens .* (\d+) prompt tokens fed, (\d+) reused`).FindAllStringSubmatch(got, -1)
	if len(stats) != 2 {
		t.Fatalf("want two /stats reports, got %q", stats)
	}
	n := func(i, j int) int { v, _ := strconv.Atoi(stats[i][j]); return v }
	if n(0, 3) < 300 || n(0, 2) > n(0, 1)+20 {
		t.Errorf("after the tool round: session %d, fed %d, reused %d", n(0, 1), n(0, 2), n(0, 3))
	}
	if n(1, 3)-n(0, 3) < n(0, 1) || n(1, 2)-n(0, 2) > 30 {
		t.Errorf("the second turn fed %d tokens and reused %d; the session held %d", n(1, 2)-n(0, 2), n(1, 3)-n(0, 3), n(0, 1))
	}
	for _, want := range []string{
		`tool call: get_weather({"city":"Paris"})`,
		"It is 18 degrees and sunny in Paris.",
		"run: ls",
		"run this command? [y/N] n\n(declined)",
		"(conversation cleared)",
		"5, 6, 7, 8, 9, 10, 11, 12.",
		"(system message set; conversation cleared)",
		"unknown command /bogus",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	if ran != 0 {
		t.Error("a declined command ran")
	}
	if strings.Contains(got, "never read") {
		t.Error("input after /exit was read")
	}
}

// TestChatRefusesUnofferedTool: a call to a tool that was not offered is
// shown to the user as refused, and the model is told so.
func TestChatRefusesUnofferedTool(t *testing.T) {
	var out bytes.Buffer
	c, err := New(engine, NewPlainReader(strings.NewReader("What's the weather in Paris?\n/exit\n"), &out, true), &out, Options{
		RunBash: func(context.Context, string) string { t.Error("bash ran"); return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, c)
	t.Log(got)
	for _, want := range []string{`tool call: get_weather({"city":"Paris"})`, "(refused: no tool get_weather was offered; offered: bash)"} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	told := false
	for _, m := range c.msgs {
		told = told || m.Role == "tool" && m.Content == `error: there is no tool named "get_weather"`
	}
	if !told {
		t.Errorf("the model was not told of the refusal: %+v", c.msgs)
	}
}
