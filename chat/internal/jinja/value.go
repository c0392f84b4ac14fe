package jinja

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Values are plain Go values so callers can build contexts without wrappers:
//
//	nil        Python None
//	bool       bool
//	int64      int (*big.Int only for JSON integers beyond int64)
//	float64    float
//	string     str
//	[]any      list
//	Tuple      tuple
//	*Dict      dict with insertion order (Python dicts are ordered and
//	           templates such as `tojson` and `|items` expose that order)
//
// Internal kinds: Undefined, *namespace, *macro, *loopObj, callable.

// Tuple is a Python tuple; it differs from a list only in repr and equality.
type Tuple []any

// Undefined is a missing variable, attribute or item. Like Jinja's default
// Undefined it prints as "" and is falsy, but using it as an object fails.
type Undefined struct{ hint string }

func (u Undefined) err() error {
	if u.hint == "" {
		return fmt.Errorf("value is undefined")
	}
	return fmt.Errorf("%s", u.hint)
}

// Dict is an insertion-ordered map with string keys.
type Dict struct {
	keys []string
	m    map[string]any
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]any{}} }

// Set stores v under k; an existing key keeps its position (Python semantics).
func (d *Dict) Set(k string, v any) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = v
}

// Get returns the value under k.
func (d *Dict) Get(k string) (any, bool) {
	v, ok := d.m[k]
	return v, ok
}

// Keys returns the keys in insertion order; the caller must not modify it.
func (d *Dict) Keys() []string { return d.keys }

// Len is the number of keys.
func (d *Dict) Len() int { return len(d.keys) }

type namespace struct{ attrs *Dict }

type callable func(r *renderer, args []any, kw []kwarg) (any, error)

type kwarg struct {
	name string
	val  any
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case Undefined:
		return "Undefined"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any:
		return "list"
	case Tuple:
		return "tuple"
	case *Dict:
		return "dict"
	case *namespace:
		return "Namespace"
	case *macro:
		return "Macro"
	case *loopObj:
		return "LoopContext"
	case callable:
		return "function"
	}
	return fmt.Sprintf("%T", v)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil, Undefined:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case *big.Int:
		return x.Sign() != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case Tuple:
		return len(x) > 0
	case *Dict:
		return x.Len() > 0
	}
	return true
}

// toStr is Python's str(), which is what `{{ }}`, `~` and |string use.
func toStr(v any) string {
	switch x := v.(type) {
	case Undefined:
		return ""
	case string:
		return x
	}
	return repr(v)
}

func repr(v any) string {
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

// maxReprDepth stops printing at a depth only reachable through a
// namespace that contains itself, where Python prints "...".
const maxReprDepth = 100

func writeRepr(b *strings.Builder, v any, depth int) {
	if depth > maxReprDepth {
		b.WriteString("...")
		return
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case Undefined:
		b.WriteString("")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case *big.Int:
		b.WriteString(x.String())
	case float64:
		b.WriteString(pyFloat(x))
	case string:
		b.WriteString(pyStrRepr(x))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, depth+1)
		}
		b.WriteByte(']')
	case Tuple:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, depth+1)
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case *Dict:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStrRepr(k))
			b.WriteString(": ")
			writeRepr(b, x.m[k], depth+1)
		}
		b.WriteByte('}')
	case *namespace:
		b.WriteString("<Namespace ")
		writeRepr(b, x.attrs, depth+1)
		b.WriteByte('>')
	default:
		fmt.Fprintf(b, "<%s object>", typeName(v))
	}
}

// pyFloat formats like Python's float repr: shortest round-trip digits,
// scientific outside 1e-4 <= |x| < 1e16, and always a ".0" on integral values.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

func pyStrRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// asInt reports v as an int64 when it is a Python int (bools count, as in Python).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f, true
	}
	if i, ok := asInt(v); ok {
		return float64(i), true
	}
	return 0, false
}

func isNumber(v any) bool {
	switch v.(type) {
	case bool, int64, *big.Int, float64:
		return true
	}
	return false
}

func equal(a, b any) bool {
	if _, ok := a.(Undefined); ok {
		_, ok2 := b.(Undefined)
		return ok2
	}
	if _, ok := b.(Undefined); ok {
		return false
	}
	if isNumber(a) && isNumber(b) {
		if ai, ok := asInt(a); ok {
			if bi, ok := asInt(b); ok {
				return ai == bi
			}
		}
		if ba, ok := a.(*big.Int); ok {
			if bb, ok := b.(*big.Int); ok {
				return ba.Cmp(bb) == 0
			}
		}
		af, _ := asFloat(a)
		bf, _ := asFloat(b)
		return af == bf
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		return ok && seqEqual(x, y)
	case Tuple:
		y, ok := b.(Tuple)
		return ok && seqEqual(x, y)
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for _, k := range x.keys {
			yv, ok := y.m[k]
			if !ok || !equal(x.m[k], yv) {
				return false
			}
		}
		return true
	}
	return a == b
}

func seqEqual(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// compare orders two values for <, <=, >, >= and sorting.
func compare(a, b any) (int, error) {
	if isNumber(a) && isNumber(b) {
		if ai, ok := asInt(a); ok {
			if bi, ok := asInt(b); ok {
				switch {
				case ai < bi:
					return -1, nil
				case ai > bi:
					return 1, nil
				}
				return 0, nil
			}
		}
		af, _ := asFloat(a)
		bf, _ := asFloat(b)
		switch {
		case af < bf:
			return -1, nil
		case af > bf:
			return 1, nil
		}
		return 0, nil
	}
	if as, ok := a.(string); ok {
		if bs, ok := b.(string); ok {
			return strings.Compare(as, bs), nil
		}
	}
	la, aok := seqItems(a)
	lb, bok := seqItems(b)
	if aok && bok && typeName(a) == typeName(b) {
		for i := 0; i < len(la) && i < len(lb); i++ {
			if equal(la[i], lb[i]) {
				continue
			}
			return compare(la[i], lb[i])
		}
		return compare(int64(len(la)), int64(len(lb)))
	}
	return 0, fmt.Errorf("ordering is not supported between instances of '%s' and '%s'", typeName(a), typeName(b))
}

func seqItems(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case Tuple:
		return x, true
	}
	return nil, false
}

// iterate lists what a for loop over v visits (dicts yield their keys).
func iterate(v any) ([]any, error) {
	switch x := v.(type) {
	case Undefined:
		return nil, nil
	case []any:
		return x, nil
	case Tuple:
		return x, nil
	case *Dict:
		out := make([]any, len(x.keys))
		for i, k := range x.keys {
			out[i] = k
		}
		return out, nil
	case string:
		out := make([]any, 0, len(x))
		for _, r := range x {
			out = append(out, string(r))
		}
		return out, nil
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

func length(v any) (int, error) {
	switch x := v.(type) {
	case Undefined:
		return 0, nil
	case string:
		return len([]rune(x)), nil
	case []any:
		return len(x), nil
	case Tuple:
		return len(x), nil
	case *Dict:
		return x.Len(), nil
	}
	return 0, fmt.Errorf("object of type '%s' has no len()", typeName(v))
}

func contains(container, item any) (bool, error) {
	switch c := container.(type) {
	case Undefined:
		return false, nil
	case string:
		s, ok := item.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return strings.Contains(c, s), nil
	case []any:
		for _, e := range c {
			if equal(e, item) {
				return true, nil
			}
		}
		return false, nil
	case Tuple:
		for _, e := range c {
			if equal(e, item) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		s, ok := item.(string)
		if !ok {
			return false, nil
		}
		_, found := c.m[s]
		return found, nil
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
}
