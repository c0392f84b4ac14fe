package jinja

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
)

// FromJSON decodes JSON into template values, keeping object key order and
// the int/float distinction that Python's json.loads makes.
func FromJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("unexpected data after JSON value")
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("unexpected data after JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				d.Set(k, v)
			}
			_, err := dec.Token()
			return d, err
		case '[':
			out := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			_, err := dec.Token()
			return out, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		return numberValue(string(t))
	}
	return tok, nil // string, bool, nil
}

func numberValue(s string) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if b, ok := new(big.Int).SetString(s, 10); ok {
			return b, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return nil, fmt.Errorf("invalid number %q", s)
	}
	return f, nil
}

// jsonOpts are the arguments of Hugging Face's tojson override, which
// calls json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...).
type jsonOpts struct {
	indent      string
	hasIndent   bool
	ensureASCII bool
	itemSep     string
	keySep      string
	sortKeys    bool
}

// ToJSON renders v exactly like Python's json.dumps with HF's defaults.
func ToJSON(v any) (string, error) {
	var b strings.Builder
	err := writeJSON(&b, v, jsonOpts{itemSep: ", ", keySep: ": "}, 0)
	return b.String(), err
}

func writeJSON(b *strings.Builder, v any, o jsonOpts, depth int) error {
	if depth > 512 {
		return fmt.Errorf("tojson: value nests too deeply")
	}
	newline := func(d int) {
		if o.hasIndent {
			b.WriteByte('\n')
			for range d {
				b.WriteString(o.indent)
			}
		}
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case *big.Int:
		b.WriteString(x.String())
	case float64:
		switch {
		case math.IsNaN(x):
			b.WriteString("NaN")
		case math.IsInf(x, 1):
			b.WriteString("Infinity")
		case math.IsInf(x, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(pyFloat(x))
		}
	case string:
		writeJSONString(b, x, o.ensureASCII)
	case []any, Tuple:
		items, _ := seqItems(x)
		if len(items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(depth + 1)
			if err := writeJSON(b, it, o, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte(']')
	case *Dict:
		if x.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := x.keys
		if o.sortKeys {
			keys = append([]string(nil), keys...)
			sort.Strings(keys)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(depth + 1)
			writeJSONString(b, k, o.ensureASCII)
			b.WriteString(o.keySep)
			if err := writeJSON(b, x.m[k], o, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte('}')
	default:
		return fmt.Errorf("tojson: object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

func writeJSONString(b *strings.Builder, s string, ascii bool) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case ascii && r > 0x7f:
				if r > 0xffff {
					r -= 0x10000
					fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				} else {
					fmt.Fprintf(b, `\u%04x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

func filterToJSON(v any, args []any, kw []kwarg) (any, error) {
	o := jsonOpts{}
	names := []string{"ensure_ascii", "indent", "separators", "sort_keys"}
	get := func(i int) (any, bool) {
		if i < len(args) {
			return args[i], true
		}
		return kwLookup(kw, names[i])
	}
	if len(args) > len(names) {
		return nil, fmt.Errorf("tojson takes at most %d arguments", len(names))
	}
	for _, k := range kw {
		known := false
		for _, n := range names {
			known = known || n == k.name
		}
		if !known {
			return nil, fmt.Errorf("tojson got an unexpected keyword argument '%s'", k.name)
		}
	}
	if a, ok := get(0); ok {
		o.ensureASCII = truthy(a)
	}
	if a, ok := get(1); ok && a != nil {
		o.hasIndent = true
		switch ind := a.(type) {
		case string:
			o.indent = ind
		default:
			n, isInt := asInt(a)
			if !isInt {
				return nil, fmt.Errorf("tojson indent must be an int or string, got %s", typeName(a))
			}
			o.indent = strings.Repeat(" ", int(max(n, 0)))
		}
	}
	o.itemSep, o.keySep = ", ", ": "
	if o.hasIndent {
		o.itemSep = ","
	}
	if a, ok := get(2); ok && a != nil {
		seps, _ := seqItems(a)
		if len(seps) != 2 {
			return nil, fmt.Errorf("tojson separators must be a pair of strings")
		}
		is, ok1 := seps[0].(string)
		ks, ok2 := seps[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("tojson separators must be a pair of strings")
		}
		o.itemSep, o.keySep = is, ks
	}
	if a, ok := get(3); ok {
		o.sortKeys = truthy(a)
	}
	var b strings.Builder
	if err := writeJSON(&b, v, o, 0); err != nil {
		return nil, err
	}
	return b.String(), nil
}
