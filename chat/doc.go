// Package chat turns OpenAI-shaped conversations into Qwen3.5 prompts and
// turns generated text back into content, reasoning and tool calls.
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
