package server

import "strings"

// stopFilter cuts generated text at the first of the request's stop
// sequences. It holds back a tail that could be the start of one, so no part
// of a stop sequence is ever streamed.
type stopFilter struct {
	stops   []string
	pending string
	hit     bool
}

// add takes the next piece and returns the text that is safe to pass on;
// after a stop sequence, hit is set and everything else is dropped.
func (f *stopFilter) add(s string) string {
	if f.hit {
		return ""
	}
	if len(f.stops) == 0 {
		return s
	}
	f.pending += s
	cut := -1
	for _, st := range f.stops {
		if i := strings.Index(f.pending, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out := f.pending[:cut]
		f.pending, f.hit = "", true
		return out
	}
	keep := 0
	for _, st := range f.stops {
		for n := min(len(st)-1, len(f.pending)); n > keep; n-- {
			if strings.HasSuffix(f.pending, st[:n]) {
				keep = n
				break
			}
		}
	}
	out := f.pending[:len(f.pending)-keep]
	f.pending = f.pending[len(f.pending)-keep:]
	return out
}

// flush returns what is held back once generation has ended.
func (f *stopFilter) flush() string {
	out := f.pending
	f.pending = ""
	return out
}
