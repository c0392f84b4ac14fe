package chat

import (
	"errors"
	"math"
	"testing"
)

func TestSamplingValidate(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	for _, ok := range []Sampling{{}, {Temperature: f(0), TopP: f(1), TopK: i(0), MaxTokens: i(1)}, {Temperature: f(2), TopP: f(0.01)}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []struct {
		s         Sampling
		api, flag string
	}{
		{Sampling{Temperature: f(-1)}, "temperature must be between 0 and 2 (got -1)", "--temperature must be between 0 and 2 (got -1)"},
		{Sampling{Temperature: f(math.NaN())}, "temperature must be between 0 and 2 (got NaN)", "--temperature must be between 0 and 2 (got NaN)"},
		{Sampling{TopP: f(2)}, "top_p must be in (0, 1] (got 2)", "--top-p must be in (0, 1] (got 2)"},
		{Sampling{TopP: f(0)}, "top_p must be in (0, 1] (got 0)", "--top-p must be in (0, 1] (got 0)"},
		{Sampling{TopK: i(-3)}, "top_k must be 0 (off) or more (got -3)", "--top-k must be 0 (off) or more (got -3)"},
		{Sampling{MaxTokens: i(0)}, "max_tokens must be at least 1 (got 0)", "--tokens must be at least 1 (got 0)"},
	} {
		err := bad.s.Validate()
		var pe *ParamError
		if !errors.As(err, &pe) || err.Error() != bad.api {
			t.Errorf("%+v: %v, want %q", bad.s, err, bad.api)
			continue
		}
		pe.Flag = true
		if pe.Error() != bad.flag {
			t.Errorf("as a flag: %q, want %q", pe.Error(), bad.flag)
		}
	}
}
