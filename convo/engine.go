// Package convo keeps one model session and the tokens it has consumed, so a
// conversation that continues where the last generation stopped only feeds
// the new tokens: the session holds the KV caches of the attention layers and
// the conv and recurrent states of the DeltaNet layers, and the recurrent
// states cannot be rewound, so anything but an exact continuation starts over.
package convo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/tokenizer"
)

// Engine is an opened model with one session. It is not safe for concurrent
// use: callers serialise generations (the model could not run two at once).
type Engine struct {
	Model    *model.Model
	Tok      *tokenizer.Tokenizer
	Template *chat.Template
	Dir      string

	sess *model.Session
	hist []int           // tokens the session has consumed, in order
	text strings.Builder // Decode(hist), kept alongside so continuations compare as text
	hdec *tokenizer.Decoder

	stopIDs []int
	// prefillChunk bounds one Forward call while feeding a prompt, so a
	// cancelled request stops within one chunk rather than after the prompt.
	prefillChunk int
}

// Open opens the packed model in dir with its tokenizer and chat template.
func Open(dir string, opts model.Options) (*Engine, error) {
	m, err := model.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	e, err := New(m, dir)
	if err != nil {
		m.Close()
		return nil, err
	}
	return e, nil
}

// New wraps an opened model; dir holds its tokenizer.json and chat template.
// Close closes m.
func New(m *model.Model, dir string) (*Engine, error) {
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	tpl, err := chat.LoadTemplate(dir)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	s, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	e := &Engine{Model: m, Tok: tok, Template: tpl, Dir: dir, sess: s, prefillChunk: 256, hdec: tok.NewDecoder()}
	for _, name := range []string{"<|im_end|>", "<|endoftext|>"} {
		if id, ok := tok.TokenID(name); ok {
			e.stopIDs = append(e.stopIDs, id)
		}
	}
	for _, id := range m.Config.EOSTokenIDs {
		if !contains(e.stopIDs, id) {
			e.stopIDs = append(e.stopIDs, id)
		}
	}
	return e, nil
}

// Close releases the model.
func (e *Engine) Close() error { return e.Model.Close() }

// StopIDs are the end-of-turn tokens generation stops at.
func (e *Engine) StopIDs() []int { return e.stopIDs }

// History is the tokens the session has consumed (do not modify).
func (e *Engine) History() []int { return e.hist }

// Reset empties the session.
func (e *Engine) Reset() error {
	e.hist = e.hist[:0]
	e.text.Reset()
	e.hdec = e.Tok.NewDecoder()
	return e.sess.Reset()
}

// MaxContext is the number of positions the session can hold.
func (e *Engine) MaxContext() int { return e.Model.Config.MaxPositionEmbeddings }

// Plan returns the tokens to feed for a prompt and how many of the prompt's
// tokens the session already holds. The session is reused when the prompt
// continues its history exactly, as token ids or as text cut at a special
// token (so the cut cannot change how either side tokenises).
func (e *Engine) Plan(prompt string) (feed []int, reused int) {
	if text := e.text.String(); len(e.hist) > 0 && len(prompt) > len(text) && strings.HasPrefix(prompt, text) {
		rest := prompt[len(text):]
		ids := e.Tok.Encode(rest)
		if len(ids) > 0 && e.Tok.IsSpecial(ids[0]) {
			return ids, len(e.hist)
		}
	}
	ids := e.Tok.Encode(prompt)
	if len(e.hist) > 0 && len(ids) > len(e.hist) && equal(ids[:len(e.hist)], e.hist) {
		return ids[len(e.hist):], len(e.hist)
	}
	return ids, 0
}

// Options control one generation.
type Options struct {
	MaxTokens int // 0: until the context is full
	Sampler   model.Sampler
	// Inject, when set, is asked after every generated token (with the text
	// generated so far) for text to force into the output, e.g. the start of
	// a tool call that tool_choice requires; it is fed to the model and
	// passed to OnText as if generated. It should return "" once satisfied.
	Inject func(generated string) string
	// Logits, when set, may change the logits before each token is sampled
	// (constrained decoding), given the text generated so far.
	Logits func(generated string, logits []float32)
	// OnText receives output text as it completes (end-of-turn tokens are
	// not text) and may return false to stop.
	OnText func(piece string) bool
}

// Finish says why a generation ended.
type Finish string

const (
	FinishStop      Finish = "stop"      // an end-of-turn token
	FinishLength    Finish = "length"    // MaxTokens or the context
	FinishCancelled Finish = "cancelled" // ctx ended
	FinishCaller    Finish = "caller"    // OnText returned false
)

// Result describes a generation.
type Result struct {
	Finish         Finish
	Text           string // generated text (without a final end-of-turn token)
	IDs            []int  // generated ids, including a final end-of-turn token and injected ids
	PromptTokens   int
	ReusedTokens   int // prompt tokens the session already held
	PrefillTime    time.Duration
	GenerateTime   time.Duration
	InjectedTokens int
}

// ErrContext is returned when the prompt does not fit the context.
var ErrContext = errors.New("prompt exceeds the model context")

// Generate continues the session with prompt (the whole conversation text,
// as rendered by the template) and samples a reply.
func (e *Engine) Generate(ctx context.Context, prompt string, o Options) (*Result, error) {
	feed, reused := e.Plan(prompt)
	if reused == 0 && len(e.hist) > 0 {
		if err := e.Reset(); err != nil {
			return nil, err
		}
	}
	return e.generate(ctx, feed, reused, o)
}

// Append feeds raw text after the history (no template) and samples a reply;
// used by callers that build the conversation turn by turn.
func (e *Engine) Append(ctx context.Context, text string, o Options) (*Result, error) {
	return e.generate(ctx, e.Tok.Encode(text), len(e.hist), o)
}

func (e *Engine) generate(ctx context.Context, feed []int, reused int, o Options) (res *Result, err error) {
	res = &Result{PromptTokens: reused + len(feed), ReusedTokens: reused}
	if len(feed) == 0 {
		return nil, errors.New("convo: nothing to feed")
	}
	if len(e.hist)+len(feed) >= e.MaxContext() {
		return nil, fmt.Errorf("%w: %d tokens, context %d", ErrContext, len(e.hist)+len(feed), e.MaxContext())
	}
	// A failed step can leave the states half-updated: start over next time.
	defer func() {
		if err != nil {
			e.Reset()
		}
	}()
	t0 := time.Now()
	var logits []float32
	for off := 0; off < len(feed); off += e.prefillChunk {
		if ctx.Err() != nil {
			res.Finish = FinishCancelled
			return res, nil
		}
		if logits, err = e.forward(feed[off:min(off+e.prefillChunk, len(feed))]); err != nil {
			return nil, err
		}
	}
	res.PrefillTime = time.Since(t0)
	t1 := time.Now()
	defer func() { res.GenerateTime = time.Since(t1) }()

	dec := e.Tok.NewDecoder()
	var sb strings.Builder
	emit := func(s string) bool {
		sb.WriteString(s)
		res.Text = sb.String()
		return o.OnText == nil || s == "" || o.OnText(s)
	}
	// A caller that stops because its context ended was cancelled.
	caller := func() Finish {
		if ctx.Err() != nil {
			return FinishCancelled
		}
		return FinishCaller
	}
	smp := o.Sampler
	max := o.MaxTokens
	for {
		if o.Inject != nil {
			if s := o.Inject(sb.String()); s != "" {
				ids := e.Tok.Encode(s)
				if room := e.MaxContext() - len(e.hist) - 1; len(ids) > room {
					res.Finish = FinishLength
					return res, nil
				}
				if logits, err = e.forward(ids); err != nil {
					return res, err
				}
				res.IDs = append(res.IDs, ids...)
				res.InjectedTokens += len(ids)
				if !emit(dec.Flush() + s) {
					res.Finish = caller()
					return res, nil
				}
			}
		}
		if ctx.Err() != nil {
			res.Finish = FinishCancelled
			return res, nil
		}
		if (max > 0 && len(res.IDs) >= max) || len(e.hist) >= e.MaxContext() {
			emit(dec.Flush())
			res.Finish = FinishLength
			return res, nil
		}
		if o.Logits != nil {
			o.Logits(sb.String(), logits)
		}
		id, err := smp.Sample(logits)
		if err != nil {
			return res, err
		}
		res.IDs = append(res.IDs, id)
		if contains(e.stopIDs, id) {
			emit(dec.Flush())
			res.Finish = FinishStop
			return res, nil
		}
		if !emit(dec.Add(id)) {
			res.Finish = caller()
			return res, nil
		}
		// Fed even when it is the last one wanted, so the history always
		// equals the text the caller saw and a continuation can reuse it.
		if logits, err = e.forward([]int{id}); err != nil {
			return res, err
		}
	}
}

// forward feeds ids and records them in the history.
func (e *Engine) forward(ids []int) ([]float32, error) {
	lg, err := e.sess.Forward(ids)
	if err != nil {
		return nil, err
	}
	e.hist = append(e.hist, ids...)
	for _, id := range ids {
		e.text.WriteString(e.hdec.Add(id))
	}
	return lg, nil
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
