// Package chat turns OpenAI-shaped conversations into Qwen3.5 prompts and
// turns generated text back into content, reasoning and tool calls.
//
// Rendering runs the checkpoint's own Jinja chat template through a small
// interpreter (internal/jinja) that reproduces Hugging Face
// apply_chat_template byte for byte, so prompts match what the model was
// trained on. Parsing is incremental (Parser) so an OpenAI-compatible server
// can stream deltas while tokens arrive.
package chat
