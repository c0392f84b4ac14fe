package chatui

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Visible returns s as a terminal would show every character of it, and
// whether that took escapes. A command the model wants to run can carry
// characters a terminal acts on instead of showing: ANSI sequences that erase
// the line and redraw it ("rm -rf ~ \x1b[2K\x1b[1Gecho hello" shows as
// "echo hello"), carriage returns, backspaces, bidirectional overrides,
// zero-width characters, invalid UTF-8. When s has any, the whole string is
// written in Go's escaped-string style (\x1b, \r, \u202e, and \\ for a
// backslash, so that escapes cannot be forged); newlines and tabs stay as
// they are, so a multi-line script reads as one.
func Visible(s string) (string, bool) {
	if !hasHidden(s) {
		return s, false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case hidden(r):
			q := fmt.Sprintf("%+q", string(r)) // "\x1b", "\r", "\u202e"
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String(), true
}

func hasHidden(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || hidden(r) {
			return true
		}
		i += n
	}
	return false
}

// hidden: control characters (C0 but newline and tab, DEL, C1), format
// characters (bidi controls, zero-width spaces and joiners, BOM) and
// line/paragraph separators.
func hidden(r rune) bool {
	return r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp))
}
