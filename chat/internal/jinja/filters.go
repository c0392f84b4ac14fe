package jinja

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

type filterFunc func(r *renderer, v any, a argList) (any, error)

// argList resolves a filter's arguments by position or keyword, as Python would.
type argList struct {
	args []any
	kw   []kwarg
}

func (a argList) get(i int, name string, def any) any {
	if i < len(a.args) {
		return a.args[i]
	}
	if v, ok := kwLookup(a.kw, name); ok {
		return v
	}
	return def
}

func (r *renderer) applyFilter(f *filterExpr, v any, sc *scope) (any, error) {
	fn, ok := filters[f.name]
	if !ok {
		return nil, fmt.Errorf("no filter named '%s'", f.name)
	}
	args, kw, err := r.evalArgs(f.args, f.kw, sc)
	if err != nil {
		return nil, err
	}
	return fn(r, v, argList{args: args, kw: kw})
}

var filters map[string]filterFunc

func init() {
	filters = map[string]filterFunc{
		"abs":        filterAbs,
		"attr":       func(_ *renderer, v any, a argList) (any, error) { return getAttr(v, toStr(a.get(0, "name", ""))) },
		"capitalize": strFilter(pyCapitalize),
		"count":      filterLength,
		"d":          filterDefault,
		"default":    filterDefault,
		"dictsort":   filterDictsort,
		"e":          filterEscape,
		"escape":     filterEscape,
		"first":      filterFirstLast(true),
		"float":      filterFloat,
		"indent":     filterIndent,
		"int":        filterInt,
		"items":      filterItems,
		"join":       filterJoin,
		"last":       filterFirstLast(false),
		"length":     filterLength,
		"list":       func(_ *renderer, v any, _ argList) (any, error) { return listOf(v) },
		"lower":      strFilter(strings.ToLower),
		"map":        filterMap,
		"reject":     selectFilter(false, false),
		"rejectattr": selectFilter(false, true),
		"replace":    filterReplace,
		"reverse":    filterReverse,
		"round":      filterRound,
		"safe":       func(_ *renderer, v any, _ argList) (any, error) { return toStr(v), nil },
		"select":     selectFilter(true, false),
		"selectattr": selectFilter(true, true),
		"sort":       filterSort,
		"string":     func(_ *renderer, v any, _ argList) (any, error) { return toStr(v), nil },
		"sum":        filterSum,
		"title":      strFilter(pyTitle),
		"tojson":     func(_ *renderer, v any, a argList) (any, error) { return filterToJSON(v, a.args, a.kw) },
		"trim":       filterTrim,
		"unique":     filterUnique,
		"upper":      strFilter(strings.ToUpper),
		"wordcount": func(_ *renderer, v any, _ argList) (any, error) {
			return int64(len(strings.FieldsFunc(toStr(v), isPySpace))), nil
		},
	}
}

func strFilter(f func(string) string) filterFunc {
	return func(_ *renderer, v any, _ argList) (any, error) { return f(toStr(v)), nil }
}

func listOf(v any) ([]any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	return append([]any{}, items...), nil
}

func filterAbs(_ *renderer, v any, _ argList) (any, error) {
	if i, ok := asInt(v); ok {
		if i < 0 {
			i = -i
		}
		return i, nil
	}
	if f, ok := v.(float64); ok {
		return math.Abs(f), nil
	}
	return nil, fmt.Errorf("bad operand type for abs(): '%s'", typeName(v))
}

func filterLength(_ *renderer, v any, _ argList) (any, error) {
	n, err := length(v)
	return int64(n), err
}

func filterDefault(_ *renderer, v any, a argList) (any, error) {
	def := a.get(0, "default_value", "")
	boolean := truthy(a.get(1, "boolean", false))
	if _, undef := v.(Undefined); undef || boolean && !truthy(v) {
		return def, nil
	}
	return v, nil
}

func filterEscape(_ *renderer, v any, _ argList) (any, error) {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\"", "&#34;", "'", "&#39;").Replace(toStr(v)), nil
}

func filterFirstLast(first bool) filterFunc {
	return func(_ *renderer, v any, _ argList) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return Undefined{hint: "no first/last item of an empty sequence"}, nil
		}
		if first {
			return items[0], nil
		}
		return items[len(items)-1], nil
	}
}

func filterFloat(_ *renderer, v any, a argList) (any, error) {
	if f, ok := asFloat(v); ok {
		return f, nil
	}
	if s, ok := v.(string); ok {
		if f, err := strconv.ParseFloat(strings.TrimFunc(s, isPySpace), 64); err == nil {
			return f, nil
		}
	}
	return a.get(0, "default", 0.0), nil
}

func filterInt(_ *renderer, v any, a argList) (any, error) {
	def := a.get(0, "default", int64(0))
	base, _ := asInt(a.get(1, "base", int64(10)))
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return def, nil
		}
		return int64(x), nil
	case string:
		s := strings.TrimFunc(x, isPySpace)
		if i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), int(base), 64); err == nil {
			return i, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return int64(f), nil
		}
		return def, nil
	}
	if i, ok := asInt(v); ok {
		return i, nil
	}
	return def, nil
}

func filterIndent(_ *renderer, v any, a argList) (any, error) {
	s := toStr(v)
	var ind string
	switch w := a.get(0, "width", int64(4)).(type) {
	case string:
		ind = w
	default:
		n, ok := asInt(w)
		if !ok {
			return nil, fmt.Errorf("indent width must be an int or string, got %s", typeName(w))
		}
		ind = strings.Repeat(" ", int(max(n, 0)))
	}
	first := truthy(a.get(1, "first", false))
	blank := truthy(a.get(2, "blank", false))
	lines := pySplitlines(s + "\n")
	var out string
	if blank {
		out = strings.Join(lines, "\n"+ind)
	} else {
		out = lines[0]
		rest := lines[1:]
		for i, l := range rest {
			if l != "" {
				rest[i] = ind + l
			}
		}
		if len(rest) > 0 {
			out += "\n" + strings.Join(rest, "\n")
		}
	}
	if first {
		out = ind + out
	}
	return out, nil
}

func filterItems(_ *renderer, v any, _ argList) (any, error) {
	switch x := v.(type) {
	case Undefined:
		return []any{}, nil
	case *Dict:
		return dictItems(x), nil
	}
	return nil, fmt.Errorf("items filter: can only get item pairs from a mapping, got %s", typeName(v))
}

func filterJoin(r *renderer, v any, a argList) (any, error) {
	sep := toStr(a.get(0, "d", ""))
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	attr := a.get(1, "attribute", nil)
	parts := make([]string, len(items))
	for i, it := range items {
		if attr != nil {
			if it, err = getItem(it, attr); err != nil {
				return nil, err
			}
		}
		parts[i] = toStr(it)
	}
	return strings.Join(parts, sep), nil
}

func filterMap(r *renderer, v any, a argList) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(items))
	if attr, ok := kwLookup(a.kw, "attribute"); ok {
		def, hasDef := kwLookup(a.kw, "default")
		for i, it := range items {
			x, err := attrPath(it, toStr(attr))
			if err != nil {
				return nil, err
			}
			if _, undef := x.(Undefined); undef && hasDef {
				x = def
			}
			out[i] = x
		}
		return out, nil
	}
	if len(a.args) == 0 {
		return nil, fmt.Errorf("map needs a filter name or attribute=")
	}
	name := toStr(a.args[0])
	fn, ok := filters[name]
	if !ok {
		return nil, fmt.Errorf("map: no filter named '%s'", name)
	}
	rest := argList{args: a.args[1:], kw: a.kw}
	for i, it := range items {
		if out[i], err = fn(r, it, rest); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// attrPath resolves Jinja's dotted attribute strings such as "function.name".
func attrPath(v any, path string) (any, error) {
	for _, part := range strings.Split(path, ".") {
		var key any = part
		if n, err := strconv.ParseInt(part, 10, 64); err == nil {
			key = n
		}
		var err error
		if v, err = getItem(v, key); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func selectFilter(keep, byAttr bool) filterFunc {
	return func(r *renderer, v any, a argList) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		args := a.args
		attr := ""
		if byAttr {
			if len(args) == 0 {
				return nil, fmt.Errorf("selectattr/rejectattr need an attribute name")
			}
			attr = toStr(args[0])
			args = args[1:]
		}
		out := []any{}
		for _, it := range items {
			x := it
			if byAttr {
				if x, err = attrPath(it, attr); err != nil {
					return nil, err
				}
			}
			var ok bool
			if len(args) == 0 {
				ok = truthy(x)
			} else if ok, err = runTest(r, toStr(args[0]), x, args[1:]); err != nil {
				return nil, err
			}
			if ok == keep {
				out = append(out, it)
			}
		}
		return out, nil
	}
}

func filterReplace(_ *renderer, v any, a argList) (any, error) {
	s := toStr(v)
	old, nw := toStr(a.get(0, "old", "")), toStr(a.get(1, "new", ""))
	n := int64(-1)
	if c := a.get(2, "count", nil); c != nil {
		n, _ = asInt(c)
	}
	return strings.Replace(s, old, nw, int(n)), nil
}

func filterReverse(_ *renderer, v any, _ argList) (any, error) {
	if s, ok := v.(string); ok {
		rs := []rune(s)
		slices.Reverse(rs)
		return string(rs), nil
	}
	items, err := listOf(v)
	if err != nil {
		return nil, err
	}
	slices.Reverse(items)
	return items, nil
}

func filterRound(_ *renderer, v any, a argList) (any, error) {
	f, ok := asFloat(v)
	if !ok {
		return nil, fmt.Errorf("round filter needs a number, got %s", typeName(v))
	}
	prec, _ := asInt(a.get(0, "precision", int64(0)))
	scale := math.Pow(10, float64(prec))
	switch m := toStr(a.get(1, "method", "common")); m {
	case "common":
		return math.RoundToEven(f*scale) / scale, nil
	case "ceil":
		return math.Ceil(f*scale) / scale, nil
	case "floor":
		return math.Floor(f*scale) / scale, nil
	default:
		return nil, fmt.Errorf("round method must be common, ceil or floor, got %q", m)
	}
}

func sortKey(v any, attr any, caseSensitive bool) (any, error) {
	var err error
	if attr != nil {
		if v, err = attrPath(v, toStr(attr)); err != nil {
			return nil, err
		}
	}
	if s, ok := v.(string); ok && !caseSensitive {
		return strings.ToLower(s), nil
	}
	return v, nil
}

func filterSort(_ *renderer, v any, a argList) (any, error) {
	items, err := listOf(v)
	if err != nil {
		return nil, err
	}
	reverse := truthy(a.get(0, "reverse", false))
	cs := truthy(a.get(1, "case_sensitive", false))
	attr := a.get(2, "attribute", nil)
	keys := make([]any, len(items))
	for i, it := range items {
		if keys[i], err = sortKey(it, attr, cs); err != nil {
			return nil, err
		}
	}
	idx := make([]int, len(items))
	for i := range idx {
		idx[i] = i
	}
	var cmpErr error
	slices.SortStableFunc(idx, func(x, y int) int {
		c, err := compare(keys[x], keys[y])
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		if reverse {
			return -c
		}
		return c
	})
	if cmpErr != nil {
		return nil, cmpErr
	}
	out := make([]any, len(items))
	for i, j := range idx {
		out[i] = items[j]
	}
	return out, nil
}

func filterDictsort(_ *renderer, v any, a argList) (any, error) {
	d, ok := v.(*Dict)
	if !ok {
		return nil, fmt.Errorf("dictsort needs a mapping, got %s", typeName(v))
	}
	cs := truthy(a.get(0, "case_sensitive", false))
	by := toStr(a.get(1, "by", "key"))
	reverse := truthy(a.get(2, "reverse", false))
	items := dictItems(d)
	pos := 0
	if by == "value" {
		pos = 1
	} else if by != "key" {
		return nil, fmt.Errorf("dictsort: 'by' must be \"key\" or \"value\", got %q", by)
	}
	var cmpErr error
	slices.SortStableFunc(items, func(x, y any) int {
		kx, _ := sortKey(x.(Tuple)[pos], nil, cs)
		ky, _ := sortKey(y.(Tuple)[pos], nil, cs)
		c, err := compare(kx, ky)
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		if reverse {
			return -c
		}
		return c
	})
	return items, cmpErr
}

func filterSum(_ *renderer, v any, a argList) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	attr := a.get(0, "attribute", nil)
	total := a.get(1, "start", int64(0))
	for _, it := range items {
		if attr != nil {
			if it, err = attrPath(it, toStr(attr)); err != nil {
				return nil, err
			}
		}
		if total, err = binaryOp("+", total, it); err != nil {
			return nil, err
		}
	}
	return total, nil
}

func filterTrim(_ *renderer, v any, a argList) (any, error) {
	chars := a.get(0, "chars", nil)
	if chars == nil {
		return strings.TrimFunc(toStr(v), isPySpace), nil
	}
	return strings.Trim(toStr(v), toStr(chars)), nil
}

func filterUnique(_ *renderer, v any, a argList) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	cs := truthy(a.get(0, "case_sensitive", false))
	attr := a.get(1, "attribute", nil)
	var seen []any
	out := []any{}
	for _, it := range items {
		k, err := sortKey(it, attr, cs)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(seen, func(s any) bool { return equal(s, k) }) {
			continue
		}
		seen = append(seen, k)
		out = append(out, it)
	}
	return out, nil
}
