package eval

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/tokenizer"
)

const (
	srcDir   = "../models/fmoe-tiny-chat/mlx-4bit"
	evalPath = "../models/fmoe-tiny-chat/eval/eval.json"
)

var packDir string

// TestMain packs the built-in model once for the whole test binary.
func TestMain(m *testing.M) {
	root, err := os.MkdirTemp("", "fmoe-eval-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	packDir = filepath.Join(root, "tiny")
	if _, err := pack.Convert(context.Background(), pack.Options{In: srcDir, Out: packDir}); err != nil {
		fmt.Fprintln(os.Stderr, "pack:", err)
		os.RemoveAll(root)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(root)
	os.Exit(code)
}

func loadAll(t *testing.T) (*File, *tokenizer.Tokenizer) {
	t.Helper()
	f, err := Load(evalPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(packDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return f, tok
}

// TestScoreMatchesReference re-scores every reference output in the file:
// the scorer must agree with the Python scorer's recorded scores.
func TestScoreMatchesReference(t *testing.T) {
	f, tok := loadAll(t)
	exact, valid, structured := 0, 0, 0
	for i, c := range f.Cases {
		for _, ref := range []struct {
			ids   []int
			score int
		}{{c.ReferenceIDs, c.ReferenceScore}, {c.MLX4IDs, c.MLX4Score}} {
			v := Score(tok.Decode(ref.ids), &c.Expected)
			if v.Exact != (ref.score == 1) {
				t.Errorf("case %d: exact %v, reference scorer said %d for %q", i, v.Exact, ref.score, tok.Decode(ref.ids))
			}
		}
		v := Score(tok.Decode(c.ReferenceIDs), &c.Expected)
		if v.Exact {
			exact++
		}
		if c.Expected.Structured() {
			structured++
			if v.Valid {
				valid++
			}
		}
	}
	if exact != f.BF16Exact || valid != 41 || structured != 41 {
		t.Errorf("bf16 reference: exact %d (file says %d), valid %d/%d (README says 41/41)", exact, f.BF16Exact, valid, structured)
	}
}

func TestScoreRules(t *testing.T) {
	call := &Expected{Type: "tool_call", Name: "get_weather", Arguments: map[string]any{"city": "Paris", "days": float64(3)}}
	js := &Expected{Type: "json", Value: map[string]any{"name": "Ana", "age": float64(30)}}
	txt := &Expected{Type: "text", Text: "Hi."}
	for _, c := range []struct {
		text         string
		x            *Expected
		exact, valid bool
	}{
		{"\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call><|im_end|>", call, true, true},
		// inline values are accepted by the reference's optional newlines
		{"<tool_call><function=get_weather><parameter=city>Paris</parameter><parameter=days>3</parameter></function></tool_call>", call, true, true},
		{"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>", call, false, true},
		{"<tool_call>\n<function=bash>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>", call, false, false},
		{"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis", call, false, false},
		// only the answer after </think> counts
		{"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call></think>no call", call, false, false},
		{"\n</think>\n\n{\"age\": 30.0, \"name\": \"Ana\"}<|im_end|>", js, true, true},
		{"{\"age\": 31, \"name\": \"Ana\"}", js, false, true},
		{"{\"age\": 30, \"nam\": \"Ana\"}", js, false, false},
		{"{\"age\": 30, \"name\": \"Ana\"} trailing", js, false, false},
		{"</think>\n Hi. \n<|im_end|>ignored", txt, true, false},
		{"Hi", txt, false, false},
	} {
		if v := Score(c.text, c.x); v.Exact != c.exact || v.Valid != c.valid {
			t.Errorf("Score(%q) = %+v, want exact %v valid %v", c.text, v, c.exact, c.valid)
		}
	}
}

// TestRunReproducesMLX4 runs a subset of the file (all 60 take over a
// minute on 2 cores; `fmoe-run eval` runs them all, see
// docs/quantization.md): every non-tool prompt, which prefill fast, and
// three tool-call prompts.
func TestRunReproducesMLX4(t *testing.T) {
	f, tok := loadAll(t)
	m, err := model.Open(packDir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var idx []int
	calls := 0
	for i, c := range f.Cases {
		if len(c.Tools) == 0 || (c.Expected.Type == "tool_call" && calls < 3) {
			idx = append(idx, i)
			if c.Expected.Type == "tool_call" {
				calls++
			}
		}
	}
	rep, err := Run(context.Background(), m, tok, f, Options{Cases: idx})
	if err != nil {
		t.Fatal(err)
	}
	if rep.MatchMLX4 < rep.N-1 {
		t.Errorf("reproduced mlx4_ids on %d of %d cases", rep.MatchMLX4, rep.N)
	}
	if rep.Exact != rep.RefExact {
		t.Errorf("exact %d, the reference mlx-4bit run has %d on these cases", rep.Exact, rep.RefExact)
	}
	for _, r := range rep.Results {
		if !r.MatchRef {
			t.Logf("case %d differs: %q", r.Index, r.Text)
		}
	}
	t.Logf("%d cases: %s", rep.N, rep.Summary())
	if testing.Verbose() {
		rep.WriteTable(os.Stdout)
	}
}

func TestRunCancelled(t *testing.T) {
	f, tok := loadAll(t)
	m, err := model.Open(packDir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, m, tok, f, Options{Cases: []int{4}}); err == nil {
		t.Fatal("a cancelled run returned no error")
	}
	if _, err := Run(context.Background(), m, tok, f, Options{Cases: []int{99}}); err == nil {
		t.Fatal("an out-of-range case returned no error")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"bad.json":   "{",
		"empty.json": `{"cases": []}`,
		"ids.json":   `{"cases": [{"expected": {"type": "text"}}]}`,
		"type.json":  `{"cases": [{"prompt_ids": [1], "expected": {"type": "poem"}}]}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := Load(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}
