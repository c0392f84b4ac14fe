// Package chat turns OpenAI-shaped conversations into prompts and turns
// generated text back into content, reasoning and tool calls, in the chat
// format (Format) of the model's family: Qwen3.5/Qwen3, GLM-4.5, DeepSeek-V3
// (V3, R1, V3.1) or Kimi-K2, read from the checkpoint's own template
// (docs/chat-formats.md).
//
// Rendering runs the checkpoint's own Jinja chat template through a small
// interpreter (internal/jinja) that reproduces Hugging Face
// apply_chat_template byte for byte, so prompts match what the model was
// trained on. Parsing is incremental (Parser) so an OpenAI-compatible server
// can stream deltas while tokens arrive.
//
// Where the OpenAI wire shape and Hugging Face's Python dicts differ, the
// conversion follows what OpenAI-compatible servers (vLLM) do before
// rendering:
//   - tool-call arguments given as JSON text are parsed into a mapping,
//     since templates iterate them with |items;
//   - content given as text parts is joined with no separator, which is
//     what the Qwen templates do with part lists;
//   - an empty ReasoningContent counts as absent, so the template falls
//     back to splitting <think>…</think> out of Content.
package chat
