package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

func strArg(args []any, i int, fn string) (string, error) {
	if i >= len(args) {
		return "", fmt.Errorf("%s: missing argument %d", fn, i+1)
	}
	s, ok := args[i].(string)
	if !ok {
		return "", fmt.Errorf("%s: argument %d must be a string, got %s", fn, i+1, typeName(args[i]))
	}
	return s, nil
}

// optChars reads an optional strip-characters argument (None means whitespace).
func optChars(args []any, fn string) (chars string, ws bool, err error) {
	if len(args) == 0 || args[0] == nil {
		return "", true, nil
	}
	s, err := strArg(args, 0, fn)
	return s, false, err
}

func pyStrip(s, chars string, ws, left, right bool) string {
	if ws {
		if left {
			s = strings.TrimLeftFunc(s, isPySpace)
		}
		if right {
			s = strings.TrimRightFunc(s, isPySpace)
		}
		return s
	}
	if left {
		s = strings.TrimLeft(s, chars)
	}
	if right {
		s = strings.TrimRight(s, chars)
	}
	return s
}

// pySplit is str.split / str.rsplit.
func pySplit(s string, args []any, kw []kwarg, fromRight bool) (any, error) {
	var sep any
	maxsplit := int64(-1)
	if len(args) > 0 {
		sep = args[0]
	} else if v, ok := kwLookup(kw, "sep"); ok {
		sep = v
	}
	if len(args) > 1 {
		maxsplit, _ = asInt(args[1])
	} else if v, ok := kwLookup(kw, "maxsplit"); ok {
		maxsplit, _ = asInt(v)
	}
	var parts []string
	switch sp := sep.(type) {
	case nil:
		parts = splitWhitespace(s, int(maxsplit), fromRight)
	case string:
		if sp == "" {
			return nil, fmt.Errorf("split: empty separator")
		}
		if maxsplit < 0 {
			parts = strings.Split(s, sp)
		} else if !fromRight {
			parts = strings.SplitN(s, sp, int(maxsplit)+1)
		} else {
			for ; maxsplit > 0; maxsplit-- {
				i := strings.LastIndex(s, sp)
				if i < 0 {
					break
				}
				parts = append([]string{s[i+len(sp):]}, parts...)
				s = s[:i]
			}
			parts = append([]string{s}, parts...)
		}
	default:
		return nil, fmt.Errorf("split: separator must be a string or None, got %s", typeName(sep))
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func splitWhitespace(s string, maxsplit int, fromRight bool) []string {
	if maxsplit < 0 {
		return strings.FieldsFunc(s, isPySpace)
	}
	var parts []string
	if !fromRight {
		for len(parts) < maxsplit {
			s = strings.TrimLeftFunc(s, isPySpace)
			i := strings.IndexFunc(s, isPySpace)
			if s == "" || i < 0 {
				break
			}
			parts = append(parts, s[:i])
			s = s[i:]
		}
		if s = strings.TrimLeftFunc(s, isPySpace); s != "" {
			parts = append(parts, s)
		}
		return parts
	}
	for len(parts) < maxsplit {
		s = strings.TrimRightFunc(s, isPySpace)
		i := strings.LastIndexFunc(s, isPySpace)
		if s == "" || i < 0 {
			break
		}
		_, size := decodeLastRune(s[:i+1])
		parts = append([]string{s[i+size:]}, parts...)
		s = s[:i]
	}
	if s = strings.TrimRightFunc(s, isPySpace); s != "" {
		parts = append([]string{s}, parts...)
	}
	return parts
}

func decodeLastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xC0 != 0x80 {
			r := []rune(s[i:])
			return r[0], len(s) - i
		}
	}
	return 0, 1
}

func pyTitle(s string) string {
	var b strings.Builder
	prev := false
	for _, r := range s {
		cased := unicode.IsLetter(r)
		if cased && !prev {
			b.WriteRune(unicode.ToTitle(r))
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		prev = cased
	}
	return b.String()
}

func pyCapitalize(s string) string {
	rs := []rune(s)
	for i, r := range rs {
		if i == 0 {
			rs[i] = unicode.ToUpper(r)
		} else {
			rs[i] = unicode.ToLower(r)
		}
	}
	return string(rs)
}

func affixMatch(s string, args []any, fn string, match func(string, string) bool) (any, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%s takes at least 1 argument", fn)
	}
	switch a := args[0].(type) {
	case string:
		return match(s, a), nil
	case Tuple, []any:
		items, _ := seqItems(a)
		for _, it := range items {
			p, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("%s: tuple items must be strings, got %s", fn, typeName(it))
			}
			if match(s, p) {
				return true, nil
			}
		}
		return false, nil
	}
	return nil, fmt.Errorf("%s: argument must be a string or tuple, got %s", fn, typeName(args[0]))
}

func strMethod(s, name string) callable {
	type fn = func(args []any, kw []kwarg) (any, error)
	simple := func(f func(string) any) fn {
		return func([]any, []kwarg) (any, error) { return f(s), nil }
	}
	strip := func(left, right bool) fn {
		return func(args []any, _ []kwarg) (any, error) {
			chars, ws, err := optChars(args, name)
			return pyStrip(s, chars, ws, left, right), err
		}
	}
	var f fn
	switch name {
	case "startswith":
		f = func(args []any, _ []kwarg) (any, error) { return affixMatch(s, args, name, strings.HasPrefix) }
	case "endswith":
		f = func(args []any, _ []kwarg) (any, error) { return affixMatch(s, args, name, strings.HasSuffix) }
	case "split":
		f = func(args []any, kw []kwarg) (any, error) { return pySplit(s, args, kw, false) }
	case "rsplit":
		f = func(args []any, kw []kwarg) (any, error) { return pySplit(s, args, kw, true) }
	case "strip":
		f = strip(true, true)
	case "lstrip":
		f = strip(true, false)
	case "rstrip":
		f = strip(false, true)
	case "upper":
		f = simple(func(s string) any { return strings.ToUpper(s) })
	case "lower":
		f = simple(func(s string) any { return strings.ToLower(s) })
	case "title":
		f = simple(func(s string) any { return pyTitle(s) })
	case "capitalize":
		f = simple(func(s string) any { return pyCapitalize(s) })
	case "isdigit":
		f = simple(func(s string) any {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) }) < 0
		})
	case "isalpha":
		f = simple(func(s string) any {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) }) < 0
		})
	case "isspace":
		f = simple(func(s string) any { return s != "" && strings.TrimFunc(s, isPySpace) == "" })
	case "splitlines":
		f = simple(func(s string) any {
			out := []any{}
			for _, l := range pySplitlines(s) {
				out = append(out, l)
			}
			return out
		})
	case "replace":
		f = func(args []any, _ []kwarg) (any, error) {
			old, err := strArg(args, 0, name)
			if err != nil {
				return nil, err
			}
			nw, err := strArg(args, 1, name)
			if err != nil {
				return nil, err
			}
			n := int64(-1)
			if len(args) > 2 {
				n, _ = asInt(args[2])
			}
			return strings.Replace(s, old, nw, int(n)), nil
		}
	case "find", "rfind", "count", "removeprefix", "removesuffix":
		f = func(args []any, _ []kwarg) (any, error) {
			sub, err := strArg(args, 0, name)
			if err != nil {
				return nil, err
			}
			switch name {
			case "find":
				return runeIndex(s, strings.Index(s, sub)), nil
			case "rfind":
				return runeIndex(s, strings.LastIndex(s, sub)), nil
			case "count":
				return int64(strings.Count(s, sub)), nil
			case "removeprefix":
				return strings.TrimPrefix(s, sub), nil
			}
			return strings.TrimSuffix(s, sub), nil
		}
	case "join":
		f = func(args []any, _ []kwarg) (any, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("join takes exactly one argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				p, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("join: item %d is %s, expected str", i, typeName(it))
				}
				parts[i] = p
			}
			return strings.Join(parts, s), nil
		}
	case "format":
		f = func(args []any, kw []kwarg) (any, error) { return pyFormat(s, args, kw) }
	default:
		return nil
	}
	return func(_ *renderer, args []any, kw []kwarg) (any, error) { return f(args, kw) }
}

func runeIndex(s string, byteIdx int) int64 {
	if byteIdx < 0 {
		return -1
	}
	return int64(len([]rune(s[:byteIdx])))
}

// pySplitlines is str.splitlines without keepends.
func pySplitlines(s string) []string {
	var out []string
	start := 0
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			out = append(out, string(rs[start:i]))
			if rs[i] == '\r' && i+1 < len(rs) && rs[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	if start < len(rs) {
		out = append(out, string(rs[start:]))
	}
	return out
}

// pyFormat supports the str.format subset templates use: {} {0} {name}
// with no format spec.
func pyFormat(s string, args []any, kw []kwarg) (any, error) {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '}' {
			if i+1 < len(s) && s[i+1] == '}' {
				i++
			}
			b.WriteByte('}')
			continue
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("format: unmatched '{'")
		}
		field := s[i+1 : i+j]
		i += j
		var v any
		switch n, err := strconv.Atoi(field); {
		case field == "":
			if auto >= len(args) {
				return nil, fmt.Errorf("format: not enough positional arguments")
			}
			v = args[auto]
			auto++
		case err == nil:
			if n >= len(args) {
				return nil, fmt.Errorf("format: no positional argument %d", n)
			}
			v = args[n]
		case strings.ContainsAny(field, ":!.["):
			return nil, fmt.Errorf("format: field %q uses unsupported conversion or spec", field)
		default:
			val, ok := kwLookup(kw, field)
			if !ok {
				return nil, fmt.Errorf("format: missing keyword argument %q", field)
			}
			v = val
		}
		b.WriteString(toStr(v))
	}
	return b.String(), nil
}

func dictMethod(d *Dict, name string) callable {
	switch name {
	case "items":
		return func(*renderer, []any, []kwarg) (any, error) { return dictItems(d), nil }
	case "keys":
		return func(*renderer, []any, []kwarg) (any, error) {
			out := make([]any, len(d.keys))
			for i, k := range d.keys {
				out[i] = k
			}
			return out, nil
		}
	case "values":
		return func(*renderer, []any, []kwarg) (any, error) {
			out := make([]any, len(d.keys))
			for i, k := range d.keys {
				out[i] = d.m[k]
			}
			return out, nil
		}
	case "get":
		return func(_ *renderer, args []any, _ []kwarg) (any, error) {
			if len(args) == 0 || len(args) > 2 {
				return nil, fmt.Errorf("get takes 1 or 2 arguments, got %d", len(args))
			}
			if k, ok := args[0].(string); ok {
				if v, ok := d.m[k]; ok {
					return v, nil
				}
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return nil, nil
		}
	}
	return nil
}

func dictItems(d *Dict) []any {
	out := make([]any, len(d.keys))
	for i, k := range d.keys {
		out[i] = Tuple{k, d.m[k]}
	}
	return out
}

func method(obj any, name string) any {
	var c callable
	switch o := obj.(type) {
	case string:
		c = strMethod(o, name)
	case *Dict:
		c = dictMethod(o, name)
	}
	if c == nil {
		return nil
	}
	return c
}
