package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/tokenizer"
)

// File is an eval file.
type File struct {
	Description string `json:"description"`
	Scoring     string `json:"scoring"`
	BF16Exact   int    `json:"bf16_exact"`
	MLX4Exact   int    `json:"mlx4_exact"`
	N           int    `json:"n"`
	Cases       []Case `json:"cases"`
}

// Case is one prompt with its expected answer and the reference outputs.
type Case struct {
	Messages       []chat.Message `json:"messages"`
	Tools          []chat.Tool    `json:"tools"`
	Expected       Expected       `json:"expected"`
	Prompt         string         `json:"prompt"`
	PromptIDs      []int          `json:"prompt_ids"`
	ReferenceIDs   []int          `json:"reference_ids"`
	ReferenceScore int            `json:"reference_score"`
	MLX4IDs        []int          `json:"mlx4_ids"`
	MLX4Score      int            `json:"mlx4_score"`
}

// Load reads and checks an eval file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("eval file %s: %w", path, err)
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("eval file %s has no cases", path)
	}
	for i, c := range f.Cases {
		if len(c.PromptIDs) == 0 {
			return nil, fmt.Errorf("eval file %s: case %d has no prompt_ids", path, i)
		}
		switch c.Expected.Type {
		case "tool_call", "json", "text":
		default:
			return nil, fmt.Errorf("eval file %s: case %d: unknown expected type %q", path, i, c.Expected.Type)
		}
	}
	return &f, nil
}

// Options control Run. The defaults are the reference's: greedy, 64 new
// tokens, stop at <|im_end|>.
type Options struct {
	MaxTokens int   // 0: 64
	Cases     []int // indices to run; nil: all
	// OnCase, when set, sees each result as it completes (progress).
	OnCase func(r *CaseResult)
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Index    int
	Type     string
	Prompt   string // the last message's content, for the table
	IDs      []int
	Text     string
	Verdict  Verdict
	MatchRef bool // IDs equal the case's mlx4_ids
	RefExact bool // the reference mlx4 output was exact (mlx4_score)
	Tokens   int
	Elapsed  time.Duration
}

// Report is the outcome of a run.
type Report struct {
	Results    []CaseResult
	N          int
	Exact      int
	Valid      int // structurally valid among Structured cases
	Structured int
	MatchMLX4  int
	RefExact   int // the file's mlx4 exact count over the cases run
	Tokens     int
	Elapsed    time.Duration
}

// Run generates every selected case on m (a fresh session per case, so no
// case sees another's state) and scores it.
func Run(ctx context.Context, m *model.Model, tok *tokenizer.Tokenizer, f *File, o Options) (*Report, error) {
	max := o.MaxTokens
	if max == 0 {
		max = 64
	}
	imEnd, ok := tok.TokenID("<|im_end|>")
	if !ok {
		return nil, fmt.Errorf("the tokenizer has no <|im_end|> token")
	}
	idx := o.Cases
	if idx == nil {
		for i := range f.Cases {
			idx = append(idx, i)
		}
	}
	s, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rep := &Report{}
	t0 := time.Now()
	for _, i := range idx {
		if i < 0 || i >= len(f.Cases) {
			return nil, fmt.Errorf("case %d out of range (the file has %d)", i, len(f.Cases))
		}
		c := &f.Cases[i]
		if err := s.Reset(); err != nil {
			return nil, err
		}
		start := time.Now()
		ids, err := s.Generate(c.PromptIDs, max, nil, []int{imEnd}, func(int) bool { return ctx.Err() == nil })
		if err != nil {
			return nil, fmt.Errorf("case %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := CaseResult{
			Index: i, Type: c.Expected.Type, IDs: ids, Text: tok.Decode(ids),
			MatchRef: slices.Equal(ids, c.MLX4IDs), RefExact: c.MLX4Score == 1,
			Tokens: len(ids), Elapsed: time.Since(start),
		}
		if n := len(c.Messages); n > 0 {
			r.Prompt = c.Messages[n-1].Content
		}
		r.Verdict = Score(r.Text, &c.Expected)
		rep.add(r, c.Expected.Structured())
		if o.OnCase != nil {
			o.OnCase(&rep.Results[len(rep.Results)-1])
		}
	}
	rep.Elapsed = time.Since(t0)
	return rep, nil
}

func (rep *Report) add(r CaseResult, structured bool) {
	rep.Results = append(rep.Results, r)
	rep.N++
	rep.Tokens += r.Tokens
	if r.Verdict.Exact {
		rep.Exact++
	}
	if structured {
		rep.Structured++
		if r.Verdict.Valid {
			rep.Valid++
		}
	}
	if r.MatchRef {
		rep.MatchMLX4++
	}
	if r.RefExact {
		rep.RefExact++
	}
}
