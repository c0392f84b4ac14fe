package chat

import "fmt"

// Sampling is the sampling part of a request (or of a command line); nil
// means "not given". The server and fmoe-run check it with the one Validate,
// so a value is refused in both places, with the same words.
type Sampling struct {
	Temperature *float64
	TopP        *float64
	TopK        *int
	MaxTokens   *int
}

// ParamError is an out-of-range setting, named by its API (JSON) name; the
// command line says the same with its flag's name (see Flag).
type ParamError struct {
	Param string // "temperature", "top_p", "top_k", "max_tokens"
	Want  string // "between 0 and 2", …
	Got   any
	Flag  bool // spell Param as a command-line flag
}

// flagNames are fmoe-run's spellings of the API names.
var flagNames = map[string]string{"temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k", "max_tokens": "--tokens"}

func (e *ParamError) Error() string {
	name := e.Param
	if e.Flag {
		name = flagNames[e.Param]
	}
	return fmt.Sprintf("%s must be %s (got %v)", name, e.Want, e.Got)
}

// Validate returns a *ParamError for the first setting out of range. The
// ranges are OpenAI's: temperature 0…2 (0: greedy), top_p above 0 and at most
// 1 (1: off); top_k is 0 (off) or more, max_tokens at least 1. NaN is
// refused everywhere.
func (s Sampling) Validate() error {
	if t := s.Temperature; t != nil && !(*t >= 0 && *t <= 2) {
		return &ParamError{Param: "temperature", Want: "between 0 and 2", Got: *t}
	}
	if p := s.TopP; p != nil && !(*p > 0 && *p <= 1) {
		return &ParamError{Param: "top_p", Want: "in (0, 1]", Got: *p}
	}
	if k := s.TopK; k != nil && *k < 0 {
		return &ParamError{Param: "top_k", Want: "0 (off) or more", Got: *k}
	}
	if n := s.MaxTokens; n != nil && *n < 1 {
		return &ParamError{Param: "max_tokens", Want: "at least 1", Got: *n}
	}
	return nil
}
