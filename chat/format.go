package chat

import "strings"

// Format is a model family's chat markup: which chat templates use it, how
// those templates want tool-call arguments, which tokens end an assistant
// turn, and how generated text splits into reasoning, content and tool
// calls. Each family is a file of its own (format_qwen.go, format_glm45.go,
// format_deepseek.go, format_kimi.go) listed in formats.
//
// The format follows the checkpoint's own chat template rather than the
// model's architecture: Kimi-K2 and DeepSeek-V3.1 share DeepSeek-V3's
// architecture but not its markup, and Qwen3-MoE checkpoints write Qwen3's
// JSON calls (Qwen3-235B) or Qwen3.5's XML ones (Qwen3-Coder).
type Format struct {
	// Name identifies the format in messages ("glm45").
	Name string
	// markers: a template containing any of them is this format's.
	markers []string
	// argumentsText: the template concatenates tool-call arguments as JSON
	// text, so they are passed as the client sent them instead of as a
	// mapping (DeepSeek's templates write tool['function']['arguments']
	// between other strings).
	argumentsText bool
	// nullCallContent: an assistant message with tool calls and no text has
	// content None, as OpenAI clients send it (DeepSeek-V3's template renders
	// the calls only when content is none).
	nullCallContent bool
	// StopTokens end an assistant turn: added tokens of the family's
	// tokenizer, besides the config's eos_token_id.
	StopTokens []string
	// Calls spells the format's tool calls for a grammar that forces one
	// (tool_choice "required" or a named function).
	Calls     *CallSyntax
	newParser func(ParserOptions) machine
	// callsOpen is the first tag of the markup of an assistant turn's calls
	// and callsClose its possible last tags, the first found in a render
	// counting (CallMarkup cuts the markup out of a render).
	callsOpen  string
	callsClose []string
	// writeCalls writes calls in the format's markup, for templates that
	// render none.
	writeCalls func([]ToolCall) string
}

// formats are tried in order; FormatQwen is the fallback.
var formats = []*Format{FormatGLM45, FormatDeepSeek, FormatKimiK2, FormatQwen}

// DetectFormat returns the format of a chat template's source: the first
// whose markers it contains, else Qwen's (the format of fmoe's own models
// and of templates that name no markup).
func DetectFormat(templateSource string) *Format {
	for _, f := range formats {
		for _, m := range f.markers {
			if strings.Contains(templateSource, m) {
				return f
			}
		}
	}
	return FormatQwen
}
