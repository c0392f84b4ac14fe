package chatui

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
)

// Turn answers one user message, running tool rounds until the model
// replies without calling a tool.
func (c *Chat) Turn(parent context.Context, text string) error {
	ctx, cancel := c.o.TurnContext(parent)
	defer cancel()
	c.stats.turns++
	n := len(c.msgs)
	c.msgs = append(c.msgs, chat.Message{Role: "user", Content: text})
	for round := 0; ; round++ {
		reply, err := c.reply(ctx, c.msgs[n:])
		if err != nil {
			c.synced = false
			return err
		}
		c.msgs = append(c.msgs, reply)
		if ctx.Err() != nil {
			fmt.Fprintln(c.out, "\n(interrupted)")
			c.synced = false
			return nil
		}
		if len(reply.ToolCalls) == 0 {
			return nil
		}
		if round+1 >= c.o.MaxToolRounds {
			fmt.Fprintf(c.out, "(stopping after %d tool rounds)\n", round+1)
			return nil
		}
		n = len(c.msgs)
		for _, call := range reply.ToolCalls {
			c.msgs = append(c.msgs, chat.Message{Role: "tool", Content: c.runTool(ctx, call), ToolCallID: call.ID, Name: call.Function.Name})
		}
	}
}

// reply generates the assistant's answer to the conversation, of which
// fresh are the messages the session has not seen yet.
func (c *Chat) reply(ctx context.Context, fresh []chat.Message) (chat.Message, error) {
	think := !c.o.NoThink
	ro := chat.RenderOptions{AddGenerationPrompt: true, EnableThinking: &think}
	var prompt string
	var err error
	continuing := c.synced && len(c.e.History()) > 0
	if continuing {
		prompt, err = c.renderTail(fresh, ro)
		if err != nil {
			continuing = false
		}
	}
	if !continuing {
		if prompt, err = c.e.Template.Render(c.msgs, c.tools, ro); err != nil {
			return chat.Message{}, fmt.Errorf("chat template: %w", err)
		}
	}
	p := chat.NewParser(chat.ParserOptions{Tools: c.tools, StartInReasoning: chat.PromptEndsInReasoning(prompt), Format: c.e.Template.Format()})
	var events []chat.Event
	pr := &Printer{Out: c.out, HideReasoning: c.o.HideReasoning, Color: c.o.Color, Warn: c.o.Warn}
	show := func(evs []chat.Event) {
		events = append(events, evs...)
		pr.Print(evs)
	}
	o := convo.Options{MaxTokens: c.o.MaxTokens, Sampler: c.o.Sampler, OnText: func(s string) bool {
		show(p.Feed(s))
		return true
	}}
	var res *convo.Result
	if continuing {
		res, err = c.e.Append(ctx, prompt, o)
	} else {
		res, err = c.e.Generate(ctx, prompt, o)
	}
	if err != nil {
		return chat.Message{}, err
	}
	show(p.Close())
	pr.End()
	c.stats.last = res
	c.stats.generated += len(res.IDs)
	c.stats.fed += res.PromptTokens - res.ReusedTokens
	c.stats.reused += res.ReusedTokens
	// The session holds the reply (less its end-of-turn token), so the next
	// turn can be appended, unless it was cut short.
	c.synced = res.Finish == convo.FinishStop || res.Finish == convo.FinishLength
	if res.Finish == convo.FinishLength {
		fmt.Fprintf(c.out, "(reply cut at %d tokens)\n", c.o.MaxTokens)
	}
	r := chat.Collect(events)
	return chat.Message{Role: "assistant", Content: r.Content, ReasoningContent: r.Reasoning, ToolCalls: r.ToolCalls}, nil
}

// renderTail renders fresh messages as the text that follows the session's
// history: the end of the last reply, then the messages as the template
// renders them after a conversation, then the generation prompt. It keeps
// earlier turns exactly as the model saw them (the template would drop the
// reasoning of earlier turns, which would force a full recompute).
func (c *Chat) renderTail(fresh []chat.Message, ro chat.RenderOptions) (string, error) {
	if len(fresh) == 0 {
		return "", fmt.Errorf("nothing new")
	}
	// The template wants a user query before tool results: render behind a
	// stand-in one and cut it off.
	anchor := []chat.Message{{Role: "user", Content: "\x00anchor\x00"}}
	if fresh[0].Role == "user" {
		anchor = nil
	}
	base := ""
	if anchor != nil {
		var err error
		if base, err = c.e.Template.Render(anchor, nil, chat.RenderOptions{}); err != nil {
			return "", err
		}
	}
	full, err := c.e.Template.Render(append(anchor, fresh...), nil, ro)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(full, base) {
		return "", fmt.Errorf("the template renders tool results differently in context")
	}
	return c.close + full[len(base):], nil
}

// runTool produces a call's result: the built-in bash tool asks before
// running; other tools ask the user to type the result.
func (c *Chat) runTool(ctx context.Context, call chat.ToolCall) string {
	var args map[string]any
	json.Unmarshal([]byte(call.Function.Arguments), &args)
	if call.Function.Name == "bash" && !c.o.NoBash {
		command, _ := args["command"].(string)
		if command == "" {
			return "error: no command given"
		}
		shown, escaped := Visible(command)
		fmt.Fprintf(c.out, "run: %s\n", strings.ReplaceAll(shown, "\n", "\n     "))
		if escaped {
			fmt.Fprintln(c.out, "(the command contains control characters, shown escaped as \\x1b, \\r, \\u202e…: a terminal would hide or redraw text there)")
		}
		ans, err := c.in.ReadLine("run this command? [y/N] ")
		if err != nil || !strings.EqualFold(strings.TrimSpace(ans), "y") && !strings.EqualFold(strings.TrimSpace(ans), "yes") {
			fmt.Fprintln(c.out, "(declined)")
			return "The user declined to run the command."
		}
		run := c.o.RunBash
		if run == nil {
			run = runBash
		}
		out := run(ctx, command)
		fmt.Fprint(c.out, out)
		if !strings.HasSuffix(out, "\n") {
			fmt.Fprintln(c.out)
		}
		return out
	}
	fmt.Fprintf(c.out, "tool call: %s\n", FormatCall(call))
	if c.tool(call.Function.Name) == nil {
		// The model made up a tool: say so, or its next words (often an
		// invented result) would look like an answer.
		fmt.Fprintf(c.out, "(refused: no tool %s was offered; %s)\n", call.Function.Name, c.offered())
		return fmt.Sprintf("error: there is no tool named %q", call.Function.Name)
	}
	ans, err := c.in.ReadLine("result (empty to decline): ")
	if err != nil || strings.TrimSpace(ans) == "" {
		fmt.Fprintln(c.out, "(declined)")
		return "The user declined to run the tool."
	}
	return ans
}

// execBash runs command and returns stdout and stderr with the exit status
// when it is not 0. The output is capped as it is read, so a command that
// prints gigabytes neither floods the model's context nor fills memory.
func execBash(ctx context.Context, command string, env []string) string {
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Env = env
	// Ctrl-C kills bash; a child still holding the output pipe must not
	// keep the chat waiting.
	cmd.WaitDelay = 2 * time.Second
	out := &capBuffer{max: maxToolOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	s := out.String()
	if err != nil {
		s += fmt.Sprintf("[%v]\n", err)
	}
	return s
}

// maxToolOutput is how much of a command's output the model gets back.
const maxToolOutput = 16 << 10

// capBuffer keeps the first max bytes written to it and counts the rest.
// (exec.Cmd calls Write from one goroutine at a time when Stdout and Stderr
// are the same writer.)
type capBuffer struct {
	buf     []byte
	max     int
	dropped int64
}

func (c *capBuffer) Write(p []byte) (int, error) {
	keep := min(len(p), c.max-len(c.buf))
	c.buf = append(c.buf, p[:keep]...)
	c.dropped += int64(len(p) - keep)
	return len(p), nil
}

// String is what was kept, cut at a whole character, and how much was not.
func (c *capBuffer) String() string {
	if c.dropped == 0 {
		return string(c.buf)
	}
	b := c.buf
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				b = b[:len(b)-i] // a character cut in half
			}
			break
		}
	}
	return fmt.Sprintf("%s\n[output truncated: %d more bytes]\n", b, c.dropped+int64(len(c.buf)-len(b)))
}

// offered lists the tools the model was given, for a refusal.
func (c *Chat) offered() string {
	if len(c.tools) == 0 {
		return "the chat offers none (--tools FILE offers some)"
	}
	names := make([]string, len(c.tools))
	for i, t := range c.tools {
		names[i] = t.Function.Name
	}
	return "offered: " + strings.Join(names, ", ")
}
