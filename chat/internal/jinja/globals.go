package jinja

import (
	"fmt"
	"strings"
	"time"
)

// maxRange matches the Jinja sandbox's cap on range() so a template
// cannot allocate without bound.
const maxRange = 100000

var builtinGlobals = map[string]any{
	"range":     callable(globalRange),
	"dict":      callable(globalDict),
	"namespace": callable(globalNamespace),
	"raise_exception": callable(func(_ *renderer, args []any, _ []kwarg) (any, error) {
		msg := "template raised an exception"
		if len(args) > 0 {
			msg = toStr(args[0])
		}
		return nil, &ExceptionError{Message: msg}
	}),
	"strftime_now": callable(func(_ *renderer, args []any, _ []kwarg) (any, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("strftime_now takes one format argument")
		}
		f, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("strftime_now format must be a string, got %s", typeName(args[0]))
		}
		return strftime(time.Now(), f)
	}),
}

func globalRange(_ *renderer, args []any, _ []kwarg) (any, error) {
	var nums [3]int64
	nums[2] = 1
	for i, a := range args {
		n, ok := asInt(a)
		if !ok {
			return nil, fmt.Errorf("range() arguments must be integers, got %s", typeName(a))
		}
		nums[i] = n
	}
	start, stop, step := nums[0], nums[1], nums[2]
	switch len(args) {
	case 1:
		start, stop = 0, nums[0]
	case 2, 3:
	default:
		return nil, fmt.Errorf("range() takes 1 to 3 arguments, got %d", len(args))
	}
	if step == 0 {
		return nil, fmt.Errorf("range() step must not be zero")
	}
	var out []any
	for i := start; step > 0 && i < stop || step < 0 && i > stop; i += step {
		if len(out) >= maxRange {
			return nil, fmt.Errorf("range() is too big (more than %d items)", maxRange)
		}
		out = append(out, i)
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}

func kwDict(args []any, kw []kwarg, fn string) (*Dict, error) {
	d := NewDict()
	if len(args) > 1 {
		return nil, fmt.Errorf("%s() takes at most one positional argument", fn)
	}
	if len(args) == 1 {
		src, ok := args[0].(*Dict)
		if !ok {
			return nil, fmt.Errorf("%s() positional argument must be a mapping, got %s", fn, typeName(args[0]))
		}
		for _, k := range src.keys {
			d.Set(k, src.m[k])
		}
	}
	for _, k := range kw {
		d.Set(k.name, k.val)
	}
	return d, nil
}

func globalDict(_ *renderer, args []any, kw []kwarg) (any, error) { return kwDict(args, kw, "dict") }

func globalNamespace(_ *renderer, args []any, kw []kwarg) (any, error) {
	d, err := kwDict(args, kw, "namespace")
	if err != nil {
		return nil, err
	}
	return &namespace{attrs: d}, nil
}

// strftime implements the common Python strftime directives.
func strftime(t time.Time, f string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'Y':
			b.WriteString(t.Format("2006"))
		case 'y':
			b.WriteString(t.Format("06"))
		case 'm':
			b.WriteString(t.Format("01"))
		case 'd':
			b.WriteString(t.Format("02"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'H':
			b.WriteString(t.Format("15"))
		case 'I':
			b.WriteString(t.Format("03"))
		case 'M':
			b.WriteString(t.Format("04"))
		case 'S':
			b.WriteString(t.Format("05"))
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("strftime_now: unsupported directive %%%c", f[i])
		}
	}
	return b.String(), nil
}
