package jinja

import (
	"fmt"
	"strings"
	"unicode"
)

// runTest evaluates `v is name(args)` with the semantics of Jinja's tests.py,
// quirks included: Undefined is iterable and a sequence, dicts are sequences.
func runTest(r *renderer, name string, v any, args []any) (bool, error) {
	arg := func() (any, error) {
		if len(args) == 0 {
			return nil, fmt.Errorf("test '%s' needs an argument", name)
		}
		return args[0], nil
	}
	switch name {
	case "defined":
		_, u := v.(Undefined)
		return !u, nil
	case "undefined":
		_, u := v.(Undefined)
		return u, nil
	case "none":
		return v == nil, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "true", "false":
		b, ok := v.(bool)
		return ok && b == (name == "true"), nil
	case "integer":
		_, ok := v.(int64)
		return ok, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "number":
		return isNumber(v), nil
	case "string":
		_, ok := v.(string)
		return ok, nil
	case "mapping":
		_, ok := v.(*Dict)
		return ok, nil
	case "iterable":
		switch v.(type) {
		case string, []any, Tuple, *Dict, Undefined, *loopObj:
			return true, nil
		}
		return false, nil
	case "sequence":
		switch v.(type) {
		case string, []any, Tuple, *Dict, Undefined:
			return true, nil
		}
		return false, nil
	case "callable":
		switch v.(type) {
		case callable, *macro:
			return true, nil
		}
		return false, nil
	case "lower", "upper":
		s := toStr(v)
		f := unicode.IsLower
		g := unicode.IsUpper
		if name == "upper" {
			f, g = g, f
		}
		return strings.IndexFunc(s, f) >= 0 && strings.IndexFunc(s, g) < 0, nil
	case "odd", "even", "divisibleby":
		i, ok := asInt(v)
		if !ok {
			return false, fmt.Errorf("test '%s' needs an integer, got %s", name, typeName(v))
		}
		d := int64(2)
		if name == "divisibleby" {
			a, err := arg()
			if err != nil {
				return false, err
			}
			if d, ok = asInt(a); !ok || d == 0 {
				return false, fmt.Errorf("divisibleby needs a non-zero integer")
			}
		}
		m := i % d
		if name == "odd" {
			return m != 0, nil
		}
		return m == 0, nil
	case "escaped":
		return false, nil
	case "filter":
		_, ok := filters[toStr(v)]
		return ok, nil
	case "test":
		_, err := runTest(r, toStr(v), nil, []any{nil})
		return err == nil || !strings.HasPrefix(err.Error(), "no test named"), nil
	}
	ops := map[string]string{
		"eq": "==", "equalto": "==", "==": "==", "ne": "!=", "!=": "!=",
		"lt": "<", "lessthan": "<", "<": "<", "le": "<=", "<=": "<=",
		"gt": ">", "greaterthan": ">", ">": ">", "ge": ">=", ">=": ">=",
		"in": "in", "sameas": "==",
	}
	if op, ok := ops[name]; ok {
		a, err := arg()
		if err != nil {
			return false, err
		}
		if name == "sameas" && typeName(v) != typeName(a) {
			return false, nil
		}
		return compareOp(op, v, a)
	}
	return false, fmt.Errorf("no test named '%s'", name)
}
