package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/runtime/model"
)

// job is a validated request, rendered and ready to generate.
type job struct {
	req    chatRequest
	prompt string
	choice toolChoice
	stops  []string
	popts  chat.ParserOptions
	max    int
	smp    model.Sampler
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
				fmt.Sprintf("request body exceeds the limit of %d bytes", s.opts.MaxBodyBytes))
		} else {
			badRequest(w, "reading the request body: %v", err)
		}
		return
	}
	// The server's read timeout covers the request, not the reply: left
	// in place, it would cancel a generation that outlasts it.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	j, status, err := s.prepare(body)
	if err != nil {
		writeJSON(w, status, requestError(err))
		return
	}
	release, err := s.acquire(r)
	switch {
	case errors.Is(err, errBusy):
		writeError(w, http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded",
			fmt.Sprintf("the model is busy and %d requests are already queued; retry later", s.opts.QueueSize))
		return
	case errors.Is(err, errClosing):
		writeError(w, http.StatusServiceUnavailable, "server_error", "server_shutting_down", errClosing.Error())
		return
	case err != nil:
		return // the client went away while queued
	}
	defer release()
	s.generate(w, r, j)
}

// prepare parses and checks a request body and renders its prompt.
func (s *Server) prepare(body []byte) (*job, int, error) {
	j := &job{}
	req := &j.req
	if err := json.Unmarshal(body, req); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed JSON in the request body: %v", err)
	}
	if err := req.validate(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if req.Model != "" && req.Model != s.opts.Name {
		return nil, http.StatusNotFound, &fieldError{param: "model", code: "model_not_found",
			msg: fmt.Sprintf("the model %q does not exist; this server serves %q (GET /v1/models)", req.Model, s.opts.Name)}
	}
	var err error
	if j.choice, err = parseToolChoice(req.ToolChoice, req.Tools); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if j.stops, err = parseStop(req.Stop); err != nil {
		return nil, http.StatusBadRequest, err
	}
	msgs := make([]chat.Message, len(req.Messages))
	for i, m := range req.Messages {
		if m.Role == "developer" { // OpenAI's newer name for system
			m.Role = "system"
		}
		msgs[i] = m
	}
	tools := req.Tools
	if j.choice.mode == "none" {
		// The model is not told about the tools, so it answers in text.
		tools = nil
	}
	ro := chat.RenderOptions{AddGenerationPrompt: true, Vars: req.ChatTemplateKwargs}
	if v, ok := req.ChatTemplateKwargs["enable_thinking"].(bool); ok {
		ro.EnableThinking = &v
	}
	if j.prompt, err = s.e.Template.Render(msgs, tools, ro); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("the chat template rejected the conversation: %v", err)
	}
	j.popts = chat.ParserOptions{Tools: req.Tools, StartInReasoning: chat.PromptEndsInReasoning(j.prompt), Format: s.e.Template.Format()}
	if f := j.popts.Format; (j.choice.mode == "required" || j.choice.mode == "function") && f.Calls == nil {
		return nil, http.StatusBadRequest, fmt.Errorf("tool_choice %q: this model's tool-call markup (%s) cannot be forced; use \"auto\"", j.choice.mode, f.Name)
	}
	switch {
	case req.MaxCompletionTokens != nil:
		j.max = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		j.max = *req.MaxTokens
	}
	j.smp.Temperature, j.smp.TopP = 1, 1 // OpenAI's defaults
	if req.Temperature != nil {
		j.smp.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		j.smp.TopP = *req.TopP
	}
	if req.Seed != nil {
		j.smp.Seed = uint64(*req.Seed)
	} else {
		j.smp.Seed = uint64(time.Now().UnixNano())
	}
	return j, 0, nil
}

func (s *Server) generate(w http.ResponseWriter, r *http.Request, j *job) {
	// The generation ends with the client, or when a shutdown's grace
	// period is over.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.base, cancel)()
	out := &responder{
		w: w, rc: http.NewResponseController(w), stall: s.opts.Timeouts.Write,
		stream: j.req.Stream, id: newID(), created: time.Now().Unix(), name: s.opts.Name, fp: s.fp,
		parser: chat.NewParser(j.popts), filter: stopFilter{stops: j.stops}, none: j.choice.mode == "none", tpl: s.e.Template,
	}
	if feed, reused := s.e.Plan(j.prompt); reused+len(feed) >= s.e.MaxContext() {
		out.fail(http.StatusBadRequest, "context_length_exceeded", fmt.Errorf("%w: %d tokens, context %d",
			convo.ErrContext, reused+len(feed), s.e.MaxContext()))
		return
	}
	out.start()
	opts := convo.Options{
		MaxTokens: j.max,
		Sampler:   j.smp,
		OnText: func(piece string) bool {
			if s.onToken != nil {
				s.onToken()
			}
			out.feed(piece)
			return !out.filter.hit && out.err == nil && ctx.Err() == nil
		},
	}
	if g := s.forcedCall(j); g != nil {
		opts.Inject, opts.Logits = g.inject, g.mask
		out.forced = true
	}
	if s.noStop || j.req.IgnoreEOS {
		mask := opts.Logits
		opts.Logits = func(text string, logits []float32) {
			if mask != nil {
				mask(text, logits)
			}
			for _, id := range s.e.StopIDs() {
				logits[id] = -1e30
			}
		}
	}
	res, err := s.e.Generate(ctx, j.prompt, opts)
	if err != nil {
		status, code := http.StatusInternalServerError, "internal_error"
		if errors.Is(err, convo.ErrContext) {
			status, code = http.StatusBadRequest, "context_length_exceeded"
		}
		s.opts.Log.Printf("%s: error: %v", out.id, err)
		out.fail(status, code, err)
		return
	}
	if out.err != nil {
		s.opts.Log.Printf("%s: the client stopped reading (%v); generation stopped", out.id, out.err)
	}
	for _, ev := range out.events {
		if ev.Unparsed && ev.Problem != "" {
			s.opts.Log.Printf("%s: %s; the markup was returned as content", out.id, ev.Problem)
		}
	}
	s.opts.Log.Printf("%s: prompt %d tokens (%d cached) in %.2fs, %d generated in %.2fs, %s",
		out.id, res.PromptTokens, res.ReusedTokens, res.PrefillTime.Seconds(), len(res.IDs), res.GenerateTime.Seconds(), res.Finish)
	if res.Finish == convo.FinishCancelled {
		if r.Context().Err() == nil && s.base.Err() != nil {
			// The client is still there: end its reply cleanly.
			out.fail(http.StatusServiceUnavailable, "server_shutting_down",
				fmt.Errorf("%w; the reply was cut off after %d tokens", errClosing, len(res.IDs)))
		}
		return // otherwise nobody is listening
	}
	u := &usage{PromptTokens: res.PromptTokens, CompletionTokens: len(res.IDs), TotalTokens: res.PromptTokens + len(res.IDs),
		PromptTokensDetails: &promptDetails{CachedTokens: res.ReusedTokens}}
	out.timings = newTimings(res)
	out.finish(res.Finish == convo.FinishLength, u, j.req.StreamOptions != nil && j.req.StreamOptions.IncludeUsage)
}

// forcedCall returns the grammar that holds the reply to a tool call when
// tool_choice is "required" or names a function, or nil.
func (s *Server) forcedCall(j *job) *callGrammar {
	if j.choice.mode != "required" && j.choice.mode != "function" {
		return nil
	}
	multi := j.req.ParallelToolCalls == nil || *j.req.ParallelToolCalls
	texts := s.tokenTexts() // fills s.special too
	first := 0              // Kimi-K2 numbers the calls of the conversation
	for _, m := range j.req.Messages {
		first += len(m.ToolCalls)
	}
	return newCallGrammar(j.popts.Format.Calls, texts, s.special, s.e.StopIDs(), j.req.Tools, j.choice, multi, j.popts.StartInReasoning, first)
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return "chatcmpl-" + hex.EncodeToString(b[:])
}
