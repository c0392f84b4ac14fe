package chat

// FormatQwen is Qwen3.5's and Qwen3's markup: <|im_start|>role … <|im_end|>
// turns, <think> reasoning, and <tool_call> holding either Qwen3.5's XML
// (<function=NAME><parameter=P>…) or Qwen3's JSON ({"name", "arguments"}).
// The parser is parser.go and toolcall.go.
var FormatQwen = &Format{
	Name:        "qwen",
	markers:     []string{"<|im_start|>"},
	StopTokens:  []string{"<|im_end|>", "<|endoftext|>"},
	ForcedCalls: true,
	newParser:   newQwenParser,
}
