package tokenizer

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a minimal JSON reader. tokenizer.json is dominated by the
// vocabulary and merges (hundreds of thousands of short strings): merely
// decoding them into typed structs with encoding/json takes about 400 ms for
// Qwen3, four times all of Parse, which walks the bytes directly and
// resolves merge strings straight to ids. Small sections are still handed
// to encoding/json as raw slices.
type scanner struct {
	data []byte
	pos  int
	buf  []byte // scratch for unescaped strings
}

type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.msg)
}

func (s *scanner) fail(format string, args ...any) error {
	return &syntaxError{off: s.pos, msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) ws() {
	for s.pos < len(s.data) && s.data[s.pos] <= ' ' {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of input, want %q", c)
		}
		return s.fail("found %q, want %q", s.data[s.pos], c)
	}
	s.pos++
	return nil
}

// str reads a string and returns its contents. The result aliases s.data
// when the string has no escapes and s.buf otherwise, so it is only valid
// until the next call.
func (s *scanner) str() ([]byte, error) {
	b, _, err := s.strAt()
	return b, err
}

// strAt is str that also returns where the contents start in s.data, or -1
// when they were unescaped into s.buf.
func (s *scanner) strAt() ([]byte, int, error) {
	if err := s.expect('"'); err != nil {
		return nil, -1, err
	}
	// Vocabulary strings are short, so one pass that stops at the quote,
	// a backslash or a control character beats separate searches.
	start := s.pos
	for i := start; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '"':
			s.pos = i + 1
			return s.data[start:i], start, nil
		case c == '\\':
			b, err := s.unescape(start)
			return b, -1, err
		case c < 0x20:
			s.pos = i
			return nil, -1, s.fail("control character in string")
		}
	}
	return nil, -1, s.fail("unterminated string")
}

// unescape decodes a string with escapes starting at data[start] (just after
// the opening quote). Lone surrogates become U+FFFD, as in encoding/json.
func (s *scanner) unescape(start int) ([]byte, error) {
	s.buf = s.buf[:0]
	i := start
	for {
		if i >= len(s.data) {
			s.pos = i
			return nil, s.fail("unterminated string")
		}
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return s.buf, nil
		case c < 0x20:
			s.pos = i
			return nil, s.fail("control character in string")
		case c != '\\':
			s.buf = append(s.buf, c)
			i++
			continue
		}
		if i+1 >= len(s.data) {
			s.pos = i
			return nil, s.fail("unterminated string")
		}
		e := s.data[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			s.buf = append(s.buf, e)
		case 'b':
			s.buf = append(s.buf, '\b')
		case 'f':
			s.buf = append(s.buf, '\f')
		case 'n':
			s.buf = append(s.buf, '\n')
		case 'r':
			s.buf = append(s.buf, '\r')
		case 't':
			s.buf = append(s.buf, '\t')
		case 'u':
			r, ok := hex4(s.data, i)
			if !ok {
				s.pos = i
				return nil, s.fail("bad \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+1 < len(s.data) && s.data[i] == '\\' && s.data[i+1] == 'u' {
					r2, ok = hex4(s.data, i+2)
				}
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			s.buf = utf8.AppendRune(s.buf, r)
		default:
			s.pos = i - 1
			return nil, s.fail("bad escape \\%c", e)
		}
	}
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return rune(v), err == nil
}

// int reads a JSON integer that fits in an int32. It parses the digits by
// hand: strconv cost more than the rest of reading a vocabulary entry.
func (s *scanner) int() (int32, error) {
	s.ws()
	start := s.pos
	neg := s.pos < len(s.data) && s.data[s.pos] == '-'
	if neg {
		s.pos++
	}
	v, digits := int64(0), 0
	for ; s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9'; s.pos++ {
		v = v*10 + int64(s.data[s.pos]-'0')
		if digits++; v > 1<<31 {
			break
		}
	}
	if neg {
		v = -v
	}
	bad := digits == 0 || v < -1<<31 || v > 1<<31-1 ||
		(digits > 1 && s.data[start+b2i(neg)] == '0') // JSON forbids leading zeros
	if !bad && s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			bad = true
		}
	}
	if bad {
		s.pos = start
		return 0, s.fail("want a 32-bit integer")
	}
	return int32(v), nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// object calls field for each key of an object; field must consume the
// value (with skip or a typed reader).
func (s *scanner) object(field func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		k, err := s.str()
		if err != nil {
			return err
		}
		key := string(k)
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("want ',' or '}' in object")
		}
	}
}

// array calls elem for each element of an array; elem must consume it.
func (s *scanner) array(elem func(i int) error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("want ',' or ']' in array")
		}
	}
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// skip consumes one value of any kind and returns its raw bytes.
func (s *scanner) skip() ([]byte, error) {
	s.ws()
	start := s.pos
	err := s.skipDepth(0)
	return s.data[start:s.pos], err
}

func (s *scanner) skipDepth(depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deeply")
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(func(string) error { return s.skipDepth(depth + 1) })
	case c == '[':
		return s.array(func(int) error { return s.skipDepth(depth + 1) })
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		for s.pos < len(s.data) && bytes.IndexByte([]byte("+-.eE0123456789"), s.data[s.pos]) >= 0 {
			s.pos++
		}
		if _, err := strconv.ParseFloat(string(s.data[start:s.pos]), 64); err != nil {
			s.pos = start
			return s.fail("bad number")
		}
		return nil
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
				s.pos += len(lit)
				return nil
			}
		}
		if c == 0 {
			return s.fail("unexpected end of input")
		}
		return s.fail("unexpected %q", c)
	}
}
