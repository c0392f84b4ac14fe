// Package convo keeps one model session and the tokens it has consumed, so a
// conversation that continues where the last generation stopped only feeds
// the new tokens: the session holds the KV caches of the attention layers and
// the conv and recurrent states of the DeltaNet layers, and the recurrent
// states cannot be rewound.
//
// So that a conversation need not continue the session exactly, the engine
// also keeps a snapshot (model.Snapshot) of the session taken while feeding
// the last prompt, just before its generation prompt (the final
// "<|im_start|>assistant…"): a new turn re-renders the conversation up to
// there unchanged, while the reply after it usually comes back different
// (Qwen3.5's template drops the reasoning of turns before the last user
// message, and clients re-serialise tool calls). A prompt that extends the
// snapshot's tokens restores it and feeds only the rest.
//
// That snapshot does not survive a tool exchange: once a new user question
// follows tool results, the template drops the reasoning of every assistant
// turn before it (the tool call's included), so the last prompt's text
// diverges right after the previous real user query. The engine therefore
// keeps a second snapshot at the end of the last real user query of the
// prompt it fed (before the <|im_start|> after the last user turn that is
// not a "<tool_response>"), when that point differs from the first one's;
// a prompt restores whichever held state, the session or a snapshot, gives
// it the longest exact prefix.
//
// Each snapshot is a copy of the model's state in host memory
// (model.Snapshot; about 190 MB for Qwen3.5-397B plus the KV rows), so the
// engine holds up to two, the second one more state copy than the engine
// with one snapshot needed. Taking one copies the state into the memory of
// the snapshot it replaces: once a prompt as a rule, twice when the prompt
// restores a point before its last real user query and feeds past it.
package convo

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	// logits is the buffer every step writes its logits into (forward).
	logits []float32
	// pick, during a greedy generate that needs no logits (no Logits
	// hook), has each step pick its token where the logits are
	// (Session.ForwardGreedy: on a GPU 8 bytes read back instead of the
	// logits), picked the last step's token.
	pick   bool
	picked int

	stopIDs []int

	// snaps[genSnap] is taken before the last prompt's generation prompt,
	// snaps[querySnap] at the end of its last real user query.
	snaps [2]held
	// imStart (-1 if the tokenizer lacks it) starts the generation prompt.
	imStart int
}

// held is the session at ids (whose text is text); snap is nil until taken.
type held struct {
	snap *model.Snapshot
	ids  []int
	text string
}

const (
	genSnap = iota
	querySnap
)

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

// New wraps an opened model; dir holds its tokenizer (tokenizer.json, or
// Kimi-K2's tiktoken.model) and chat template.
// Close closes m.
func New(m *model.Model, dir string) (*Engine, error) {
	tok, err := tokenizer.LoadDir(dir)
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
	e := &Engine{Model: m, Tok: tok, Template: tpl, Dir: dir, sess: s, hdec: tok.NewDecoder(), imStart: -1}
	if id, ok := tok.TokenID("<|im_start|>"); ok {
		e.imStart = id
	}
	// The turn ends at the chat format's end-of-turn tokens (chat.Format.StopTokens).
	for _, name := range tpl.Format().StopTokens {
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
func (e *Engine) Close() error {
	// The session's buffers go back to the backend before the model (and
	// with it the backend) closes.
	return errors.Join(e.sess.Close(), e.Model.Close())
}

// StopIDs are the end-of-turn tokens generation stops at.
func (e *Engine) StopIDs() []int { return e.stopIDs }

// History is the tokens the session has consumed (do not modify).
func (e *Engine) History() []int { return e.hist }

// Reset empties the session and forgets the snapshots, so the next prompt is
// computed from scratch.
func (e *Engine) Reset() error {
	e.dropSnapshot()
	return e.resetSession()
}

// resetSession empties the session but keeps the snapshots: after a failed
// step the snapshots, copies, are still good.
func (e *Engine) resetSession() error {
	e.hist = e.hist[:0]
	e.text.Reset()
	e.hdec = e.Tok.NewDecoder()
	return e.sess.Reset()
}

// MaxContext is the number of positions the session can hold.
func (e *Engine) MaxContext() int { return e.Model.Config.MaxPositionEmbeddings }

// Plan returns the tokens to feed for a prompt and how many of the prompt's
// tokens the session already holds, or holds once a snapshot is restored.
// The session is reused when the prompt continues its history exactly, a
// snapshot when the prompt continues its tokens; either as token ids or as
// text cut at a special token (so the cut cannot change how either side
// tokenises). The longest reuse wins.
func (e *Engine) Plan(prompt string) (feed []int, reused int) {
	p := e.plan(prompt)
	return p.feed, p.reused
}

// plan is Plan that also says which snapshot, if any, must be restored first.
type plan struct {
	feed    []int
	reused  int
	restore *held
}

func (e *Engine) plan(prompt string) plan {
	var ids []int // the prompt's tokens, encoded once if needed
	extends := func(held []int, text string) ([]int, bool) {
		if len(held) == 0 {
			return nil, false
		}
		if len(prompt) > len(text) && strings.HasPrefix(prompt, text) {
			rest := e.Tok.Encode(prompt[len(text):])
			if len(rest) > 0 && e.Tok.IsSpecial(rest[0]) {
				return rest, true
			}
		}
		if ids == nil {
			ids = e.Tok.Encode(prompt)
		}
		if len(ids) > len(held) && equal(ids[:len(held)], held) {
			return ids[len(held):], true
		}
		return nil, false
	}
	var best plan
	if feed, ok := extends(e.hist, e.text.String()); ok {
		best = plan{feed: feed, reused: len(e.hist)}
	}
	for i := range e.snaps {
		h := &e.snaps[i]
		if h.snap == nil || len(h.ids) <= best.reused {
			continue
		}
		if feed, ok := extends(h.ids, h.text); ok {
			best = plan{feed: feed, reused: len(h.ids), restore: h}
		}
	}
	if best.reused == 0 {
		if ids == nil {
			ids = e.Tok.Encode(prompt)
		}
		best.feed = ids
	}
	return best
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
	p := e.plan(prompt)
	switch {
	case p.restore != nil:
		if err := e.restore(p.restore); err != nil {
			// The snapshot is no good: start over without any.
			if err := e.Reset(); err != nil {
				return nil, err
			}
			p = plan{feed: e.Tok.Encode(prompt)}
		}
	case p.reused == 0 && len(e.hist) > 0:
		if err := e.resetSession(); err != nil {
			return nil, err
		}
	}
	return e.generate(ctx, p.feed, p.reused, o)
}

// restore puts the session and its history back to h.
func (e *Engine) restore(h *held) error {
	if err := e.sess.Restore(h.snap); err != nil {
		return err
	}
	e.hist = append(e.hist[:0], h.ids...)
	e.text.Reset()
	e.text.WriteString(h.text)
	// The decoder may hold the start of a character split across tokens:
	// replay the tokens rather than trust the text alone.
	e.hdec = e.Tok.NewDecoder()
	for _, id := range h.ids {
		e.hdec.Add(id)
	}
	return nil
}

func (e *Engine) dropSnapshot() { e.snaps = [2]held{} }

// holds reports whether h holds the session at exactly ids.
func (h *held) holds(ids []int) bool { return h.snap != nil && equal(h.ids, ids) }

// takeSnapshot snapshots the session at its current history into slot i,
// reusing the memory of the snapshot it replaces. A failure only loses the
// reuse it would have offered.
func (e *Engine) takeSnapshot(i int) {
	old := e.snaps[i].snap
	e.snaps[i] = held{}
	sn, err := e.sess.SnapshotReuse(old)
	if err != nil {
		return
	}
	e.snaps[i] = held{snap: sn, ids: slices.Clone(e.hist), text: e.text.String()}
}

// takeGenSnapshot takes the generation-prompt snapshot. When the one it
// replaces is at query, the end of this prompt's last real user query (as
// after a prompt whose generation prompt follows that query), it becomes
// the query snapshot instead of being overwritten: moved, not copied.
func (e *Engine) takeGenSnapshot(query int) {
	g, q := &e.snaps[genSnap], &e.snaps[querySnap]
	if query >= 0 && query <= len(e.hist) && g.holds(e.hist[:query]) && !q.holds(e.hist[:query]) {
		*g, *q = *q, *g
	}
	e.takeSnapshot(genSnap)
}

// snapshotAt is where in feed to snapshot: before the last <|im_start|>,
// where the generation prompt starts, or at its end when there is none.
// -1 when a snapshot of that point is already held (either one: the prompt
// restored the query snapshot and only adds its generation prompt).
func (e *Engine) snapshotAt(feed []int) int {
	cut := len(feed)
	for i := len(feed) - 1; i >= 0; i-- {
		if feed[i] == e.imStart {
			cut = i
			break
		}
	}
	if cut == 0 && (e.snaps[genSnap].holds(e.hist) || e.snaps[querySnap].holds(e.hist)) {
		return -1
	}
	return cut
}

// queryEnd is the end of the last real user query in the history followed
// by feed: the position of the <|im_start|> after the last "user" turn that
// is not tool results (which the template renders as user turns starting
// "<tool_response>"). -1 when there is none.
func (e *Engine) queryEnd(feed []int) int {
	n := len(e.hist)
	at := func(i int) int {
		if i < n {
			return e.hist[i]
		}
		return feed[i-n]
	}
	next := -1 // the <|im_start|> after i
	for i := n + len(feed) - 1; i >= 0; i-- {
		if at(i) != e.imStart {
			continue
		}
		var head []int // enough of the turn to tell its role and start
		for j := i + 1; j < n+len(feed) && j < i+8 && at(j) != e.imStart; j++ {
			head = append(head, at(j))
		}
		s := e.Tok.Decode(head)
		if strings.HasPrefix(s, "user\n") && !strings.HasPrefix(s, "user\n<tool_response>") {
			return next
		}
		next = i
	}
	return -1
}

// queryAt is where in feed to take the query snapshot, given the end of the
// last real user query (queryEnd) and the generation snapshot's cut: -1
// when the point is in the history, is the generation snapshot's, or is
// already held.
func (e *Engine) queryAt(feed []int, query, gen int) int {
	n := len(e.hist)
	if query < n || query-n >= gen || query-n > len(feed) {
		return -1
	}
	if query == n && (e.snaps[querySnap].holds(e.hist) || e.snaps[genSnap].holds(e.hist)) {
		return -1
	}
	return query - n
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
			e.resetSession()
		}
	}()
	t0 := time.Now()
	var logits []float32
	e.pick = o.Sampler.Greedy() && o.Logits == nil
	defer func() { e.pick = false }()
	// Fed in parts around the snapshot points; the model checks ctx
	// between layers, so a cancel stops within one layer either way.
	query := e.queryEnd(feed)
	gen := e.snapshotAt(feed)
	qcut := e.queryAt(feed, query, gen)
	snapshot := func(fed int) {
		if fed == qcut {
			e.takeSnapshot(querySnap)
		}
		if fed == gen {
			e.takeGenSnapshot(query)
		}
	}
	if ctx.Err() == nil {
		snapshot(0)
	}
	bounds := []int{0}
	for _, c := range []int{qcut, gen, len(feed)} {
		if c > bounds[len(bounds)-1] {
			bounds = append(bounds, c)
		}
	}
	for i := 1; i < len(bounds); i++ {
		part := feed[bounds[i-1]:bounds[i]]
		if ctx.Err() != nil {
			res.Finish = FinishCancelled
			return res, nil
		}
		if logits, err = e.forward(ctx, part); err != nil {
			if e.cancelled(ctx, err) {
				res.Finish = FinishCancelled
				return res, nil
			}
			return nil, err
		}
		snapshot(bounds[i])
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
				if logits, err = e.forward(ctx, ids); err != nil {
					if e.cancelled(ctx, err) {
						res.Finish = FinishCancelled
						return res, nil
					}
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
		id := e.picked
		if !e.pick {
			if id, err = smp.Sample(logits); err != nil {
				return res, err
			}
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
		if logits, err = e.forward(ctx, []int{id}); err != nil {
			if e.cancelled(ctx, err) {
				res.Finish = FinishCancelled
				return res, nil
			}
			return res, err
		}
	}
}

// forward feeds ids and records them in the history. It stops within a
// layer when ctx ends, so a client that goes away during a long prefill
// frees the model at once.
func (e *Engine) forward(ctx context.Context, ids []int) ([]float32, error) {
	var lg []float32
	var err error
	if e.pick {
		e.picked, err = e.sess.ForwardGreedy(ctx, ids)
	} else if lg, err = e.sess.ForwardContextInto(ctx, e.logits, ids); err == nil {
		// The logits are read only until the next step: one buffer for all.
		e.logits = lg
	}
	if err != nil {
		return nil, err
	}
	e.hist = append(e.hist, ids...)
	for _, id := range ids {
		e.text.WriteString(e.hdec.Add(id))
	}
	return lg, nil
}

// cancelled reports whether err is ctx ending during a step. The step
// left the session part-way, so it is reset (the snapshots, copies, stay).
func (e *Engine) cancelled(ctx context.Context, err error) bool {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return false
	}
	e.resetSession()
	return true
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
