package jinja

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind uint8

const (
	tText tokKind = iota
	tVarBegin
	tVarEnd
	tBlockBegin
	tBlockEnd
	tName
	tString
	tInt
	tFloat
	tOp
	tEOF
)

type token struct {
	kind tokKind
	val  string
	line int
}

func (t token) String() string {
	switch t.kind {
	case tVarBegin:
		return "'{{'"
	case tVarEnd:
		return "'}}'"
	case tBlockBegin:
		return "'{%'"
	case tBlockEnd:
		return "'%}'"
	case tEOF:
		return "end of template"
	case tText:
		return "template text"
	case tString:
		return "string literal"
	}
	return fmt.Sprintf("'%s'", t.val)
}

// lexer reproduces the whitespace rules Hugging Face renders with:
// trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False.
type lexer struct {
	src  string
	pos  int
	line int
	toks []token
	// lineStarting is Jinja's notion that the previous match ended a line,
	// which lets lstrip_blocks apply to a tag at the very start of text.
	lineStarting bool
}

func lex(src string) ([]token, error) {
	l := &lexer{src: normalizeNewlines(src), line: 1, lineStarting: true}
	if err := l.run(); err != nil {
		return nil, err
	}
	l.toks = append(l.toks, token{kind: tEOF, line: l.line})
	return l.toks, nil
}

// normalizeNewlines mirrors Jinja: every newline becomes "\n" and one
// trailing newline of the source is dropped.
func normalizeNewlines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.TrimSuffix(s, "\n")
}

func (l *lexer) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", l.line, fmt.Sprintf(format, args...))
}

func (l *lexer) advance(n int) {
	l.line += strings.Count(l.src[l.pos:l.pos+n], "\n")
	l.pos += n
}

func (l *lexer) emit(kind tokKind, val string) {
	l.toks = append(l.toks, token{kind: kind, val: val, line: l.line})
}

func (l *lexer) run() error {
	for l.pos < len(l.src) {
		rest := l.src[l.pos:]
		idx := indexTagStart(rest)
		if idx < 0 {
			l.emit(tText, rest)
			l.advance(len(rest))
			return nil
		}
		text := rest[:idx]
		kind := rest[idx+1]
		var mod byte
		if idx+2 < len(rest) {
			mod = rest[idx+2]
		}
		switch {
		case mod == '-':
			text = strings.TrimRightFunc(text, isPySpace)
		case mod != '+' && kind != '{':
			lpos := strings.LastIndexByte(text, '\n') + 1
			if lpos > 0 || l.lineStarting {
				if tail := text[lpos:]; tail != "" && strings.TrimFunc(tail, isPySpace) == "" {
					text = text[:lpos]
				}
			}
		}
		if text != "" {
			l.emit(tText, text)
		}
		l.advance(idx + 2)
		if mod == '-' || mod == '+' {
			l.advance(1)
		}
		l.lineStarting = false
		var err error
		switch kind {
		case '#':
			err = l.comment()
		case '{':
			l.emit(tVarBegin, "")
			err = l.inside('}', tVarEnd)
		case '%':
			if l.rawBlock() {
				continue
			}
			l.emit(tBlockBegin, "")
			err = l.inside('%', tBlockEnd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func indexTagStart(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '{' && (s[i+1] == '{' || s[i+1] == '%' || s[i+1] == '#') {
			return i
		}
	}
	return -1
}

// endTag consumes a tag end ("%}", "-%}", "+%}") at l.pos with its
// trailing whitespace rule; trim says whether trim_blocks applies.
func (l *lexer) endTag(closer byte, trim bool) bool {
	rest := l.src[l.pos:]
	end := string([]byte{closer, '}'})
	var n int
	switch {
	case strings.HasPrefix(rest, "-"+end):
		n = 3
		after := rest[n:]
		n += len(after) - len(strings.TrimLeftFunc(after, isPySpace))
	case strings.HasPrefix(rest, "+"+end) && closer != '}':
		n = 3
	case strings.HasPrefix(rest, end):
		n = 2
		if trim && strings.HasPrefix(rest[n:], "\n") {
			n++
		}
	default:
		return false
	}
	l.lineStarting = n > 0 && rest[n-1] == '\n'
	l.advance(n)
	return true
}

func (l *lexer) comment() error {
	start := l.line
	i := strings.Index(l.src[l.pos:], "#}")
	if i < 0 {
		return fmt.Errorf("line %d: unterminated comment", start)
	}
	if i > 0 && (l.src[l.pos+i-1] == '-' || l.src[l.pos+i-1] == '+') {
		i--
	}
	l.advance(i)
	l.endTag('#', true)
	return nil
}

// rawBlock handles {% raw %}…{% endraw %}, whose body is literal text.
func (l *lexer) rawBlock() bool {
	rest := l.src[l.pos:]
	body := strings.TrimLeftFunc(rest, isPySpace)
	if !strings.HasPrefix(body, "raw") {
		return false
	}
	body = strings.TrimLeftFunc(body[3:], isPySpace)
	var skip int
	switch {
	case strings.HasPrefix(body, "-%}"):
		after := body[3:]
		skip = len(rest) - len(strings.TrimLeftFunc(after, isPySpace))
	case strings.HasPrefix(body, "%}"):
		skip = len(rest) - len(body) + 2
	default:
		return false
	}
	inner := rest[skip:]
	for off := 0; ; {
		i := strings.Index(inner[off:], "{%")
		if i < 0 {
			return false
		}
		i += off
		tag := inner[i+2:]
		mod := byte(0)
		if tag != "" && (tag[0] == '-' || tag[0] == '+') {
			mod = tag[0]
			tag = tag[1:]
		}
		t := strings.TrimLeftFunc(tag, isPySpace)
		if !strings.HasPrefix(t, "endraw") {
			off = i + 2
			continue
		}
		t = strings.TrimLeftFunc(t[6:], isPySpace)
		if !strings.HasPrefix(t, "%}") && !strings.HasPrefix(t, "-%}") && !strings.HasPrefix(t, "+%}") {
			off = i + 2
			continue
		}
		text := inner[:i]
		if mod == '-' {
			text = strings.TrimRightFunc(text, isPySpace)
		}
		if text != "" {
			l.emit(tText, text)
		}
		l.advance(skip + len(inner) - len(t))
		l.endTag('%', true)
		return true
	}
}

// inside tokenizes an expression until the tag end at bracket depth zero.
func (l *lexer) inside(closer byte, endKind tokKind) error {
	depth := 0
	start := l.line
	for {
		for l.pos < len(l.src) {
			r, size := utf8.DecodeRuneInString(l.src[l.pos:])
			if !isPySpace(r) {
				break
			}
			l.advance(size)
		}
		if l.pos >= len(l.src) {
			return fmt.Errorf("line %d: unclosed tag, expected '%c}'", start, closer)
		}
		if depth == 0 && l.endTag(closer, closer == '%') {
			l.emit(endKind, "")
			return nil
		}
		rest := l.src[l.pos:]
		c := rest[0]
		switch {
		case c == '\'' || c == '"':
			s, n, err := lexString(rest)
			if err != nil {
				return l.errorf("%v", err)
			}
			l.emit(tString, s)
			l.advance(n)
		case c >= '0' && c <= '9':
			n, isFloat := lexNumber(rest)
			kind := tInt
			if isFloat {
				kind = tFloat
			}
			l.emit(kind, strings.ReplaceAll(rest[:n], "_", ""))
			l.advance(n)
		case c == '_' || c >= 0x80 || unicode.IsLetter(rune(c)):
			n := 0
			for n < len(rest) {
				r, size := utf8.DecodeRuneInString(rest[n:])
				if r != '_' && !unicode.IsLetter(r) && !(n > 0 && unicode.IsDigit(r)) {
					break
				}
				n += size
			}
			if n == 0 {
				return l.errorf("unexpected character %q", rest[0])
			}
			l.emit(tName, rest[:n])
			l.advance(n)
		default:
			op := lexOp(rest)
			if op == "" {
				return l.errorf("unexpected character %q", c)
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth > 0 {
					depth--
				}
			}
			l.emit(tOp, op)
			l.advance(len(op))
		}
	}
}

func lexOp(s string) string {
	for _, op := range []string{"**", "//", "==", "!=", "<=", ">="} {
		if strings.HasPrefix(s, op) {
			return op
		}
	}
	if strings.IndexByte("+-*/%~()[]{},.:|=<>;", s[0]) >= 0 {
		return s[:1]
	}
	return ""
}

func lexNumber(s string) (n int, isFloat bool) {
	digits := func(i int) int {
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '_' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9') {
			i++
		}
		return i
	}
	n = digits(0)
	if n+1 < len(s) && s[n] == '.' && s[n+1] >= '0' && s[n+1] <= '9' {
		n = digits(n + 1)
		isFloat = true
	}
	if n < len(s) && (s[n] == 'e' || s[n] == 'E') {
		j := n + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && s[j] >= '0' && s[j] <= '9' {
			n = digits(j)
			isFloat = true
		}
	}
	return n, isFloat
}

// lexString decodes a quoted literal the way Jinja does (Python
// unicode-escape): known escapes are decoded, unknown ones kept verbatim.
func lexString(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c != '\\':
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			break
		}
		e := s[i+1]
		i += 2
		switch e {
		case '\n':
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'a':
			b.WriteByte('\a')
		case 'x', 'u', 'U':
			w := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+w > len(s) {
				return "", 0, fmt.Errorf("truncated \\%c escape in string literal", e)
			}
			var r rune
			for _, h := range s[i : i+w] {
				d := hexVal(h)
				if d < 0 {
					return "", 0, fmt.Errorf("invalid \\%c escape in string literal", e)
				}
				r = r*16 + rune(d)
			}
			b.WriteRune(r)
			i += w
		case '0', '1', '2', '3', '4', '5', '6', '7':
			r := rune(e - '0')
			for k := 0; k < 2 && i < len(s) && s[i] >= '0' && s[i] <= '7'; k++ {
				r = r*8 + rune(s[i]-'0')
				i++
			}
			b.WriteRune(r)
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return "", 0, fmt.Errorf("unterminated string literal")
}

func hexVal(r rune) int {
	switch {
	case r >= '0' && r <= '9':
		return int(r - '0')
	case r >= 'a' && r <= 'f':
		return int(r-'a') + 10
	case r >= 'A' && r <= 'F':
		return int(r-'A') + 10
	}
	return -1
}

// isPySpace matches Python's str.isspace / regex \s closely enough for
// template whitespace: Unicode spaces plus the ASCII separators 0x1c-0x1f.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}
