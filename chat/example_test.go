package chat_test

import (
	"fmt"

	"github.com/fmoe/fmoe/chat"
)

func ExampleParser() {
	n := 0
	p := chat.NewParser(chat.ParserOptions{
		StartInReasoning: true, // the prompt ended with "<think>\n"
		NewID:            func() string { n++; return fmt.Sprintf("call_%d", n) },
	})
	// Chunks as a detokenizer might produce them, splitting tags anywhere.
	chunks := []string{"Need the ", "weather.\n</th", "ink>\n\n<tool", "_call>\n<function=get_weather>\n",
		"<parameter=city>\nParis\n</param", "eter>\n</function>\n</tool_call>"}
	var events []chat.Event
	for _, c := range chunks {
		events = append(events, p.Feed(c)...)
	}
	events = append(events, p.Close()...)
	for _, e := range events {
		switch e.Kind {
		case chat.EventToolCallDelta:
			fmt.Printf("delta index=%d id=%q name=%q args=%q\n", e.Delta.Index, e.Delta.ID, e.Delta.Function.Name, e.Delta.Function.Arguments)
		case chat.EventToolCall:
			fmt.Printf("call %s %s\n", e.Call.Function.Name, e.Call.Function.Arguments)
		default:
			fmt.Printf("%s %q\n", e.Kind, e.Text)
		}
	}
	// Output:
	// reasoning "Need the"
	// reasoning " weather."
	// delta index=0 id="call_1" name="get_weather" args=""
	// delta index=0 id="" name="" args="{\"city\":\"Paris\""
	// delta index=0 id="" name="" args="}"
	// call get_weather {"city":"Paris"}
}

func ExampleTemplate_Render() {
	tpl, err := chat.LoadTemplate("../testdata/tiny/tokenizer")
	if err != nil {
		panic(err)
	}
	off := false
	prompt, err := tpl.Render([]chat.Message{{Role: "user", Content: "Hi"}}, nil,
		chat.RenderOptions{AddGenerationPrompt: true, EnableThinking: &off})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", prompt)
	fmt.Println(chat.PromptEndsInReasoning(prompt))
	// Output:
	// "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
	// false
}
