package jinja

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// sliceIndices implements Python's slice.indices.
func sliceIndices(n int, start, stop, step *int64) ([]int, error) {
	st := int64(1)
	if step != nil {
		st = *step
	}
	if st == 0 {
		return nil, fmt.Errorf("slice step cannot be zero")
	}
	ln := int64(n)
	clamp := func(p *int64, def int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += ln
			if v < 0 {
				if st < 0 {
					return -1
				}
				return 0
			}
		} else if v >= ln {
			if st < 0 {
				return ln - 1
			}
			return ln
		}
		return v
	}
	var lo, hi int64
	if st > 0 {
		lo, hi = clamp(start, 0), clamp(stop, ln)
	} else {
		lo, hi = clamp(start, ln-1), clamp(stop, -1)
	}
	var out []int
	for i := lo; (st > 0 && i < hi) || (st < 0 && i > hi); i += st {
		out = append(out, int(i))
	}
	return out, nil
}

func binaryOp(op string, l, r any) (any, error) {
	if op == "~" {
		return toStr(l) + toStr(r), nil
	}
	if u, ok := l.(Undefined); ok {
		return nil, u.err()
	}
	if u, ok := r.(Undefined); ok {
		return nil, u.err()
	}
	_, lInt := asInt(l)
	_, rInt := asInt(r)
	switch op {
	case "+":
		switch x := l.(type) {
		case string:
			if y, ok := r.(string); ok {
				return x + y, nil
			}
		case []any:
			if y, ok := r.([]any); ok {
				return append(append([]any{}, x...), y...), nil
			}
		case Tuple:
			if y, ok := r.(Tuple); ok {
				return append(append(Tuple{}, x...), y...), nil
			}
		}
	case "*":
		if s, ok := l.(string); ok && rInt {
			n, _ := asInt(r)
			return repeatStr(s, n)
		}
		if s, ok := r.(string); ok && lInt {
			n, _ := asInt(l)
			return repeatStr(s, n)
		}
		if items, ok := l.([]any); ok && rInt {
			n, _ := asInt(r)
			if n < 0 {
				n = 0
			}
			if int64(len(items))*n > maxOutput {
				return nil, fmt.Errorf("list repetition result is too large")
			}
			var out []any
			for range n {
				out = append(out, items...)
			}
			return out, nil
		}
	}
	if lInt && rInt {
		a, _ := asInt(l)
		b, _ := asInt(r)
		return intOp(op, a, b)
	}
	a, aok := asFloat(l)
	b, bok := asFloat(r)
	if aok && bok {
		return floatOp(op, a, b)
	}
	return nil, fmt.Errorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
}

func repeatStr(s string, n int64) (any, error) {
	if n <= 0 {
		return "", nil
	}
	if int64(len(s))*n > maxOutput {
		return nil, fmt.Errorf("string repetition result is too large")
	}
	return strings.Repeat(s, int(n)), nil
}

func intOp(op string, a, b int64) (any, error) {
	var big1, big2 big.Int
	big1.SetInt64(a)
	big2.SetInt64(b)
	var res big.Int
	switch op {
	case "+":
		res.Add(&big1, &big2)
	case "-":
		res.Sub(&big1, &big2)
	case "*":
		res.Mul(&big1, &big2)
	case "/":
		if b == 0 {
			return nil, fmt.Errorf("division by zero")
		}
		return float64(a) / float64(b), nil
	case "//", "%":
		if b == 0 {
			return nil, fmt.Errorf("integer division or modulo by zero")
		}
		q, m := a/b, a%b
		if m != 0 && (m < 0) != (b < 0) {
			q--
			m += b
		}
		if op == "//" {
			return q, nil
		}
		return m, nil
	case "**":
		if b < 0 {
			return math.Pow(float64(a), float64(b)), nil
		}
		if b > 4096 {
			return nil, fmt.Errorf("exponent %d is too large", b)
		}
		res.Exp(&big1, &big2, nil)
	default:
		return nil, fmt.Errorf("unknown operator %s", op)
	}
	if !res.IsInt64() {
		return nil, fmt.Errorf("integer result of %s overflows 64 bits", op)
	}
	return res.Int64(), nil
}

func floatOp(op string, a, b float64) (any, error) {
	switch op {
	case "+":
		return a + b, nil
	case "-":
		return a - b, nil
	case "*":
		return a * b, nil
	case "/":
		if b == 0 {
			return nil, fmt.Errorf("float division by zero")
		}
		return a / b, nil
	case "//", "%":
		if b == 0 {
			return nil, fmt.Errorf("float modulo by zero")
		}
		m := math.Mod(a, b)
		if m != 0 && (m < 0) != (b < 0) {
			m += b
		}
		if op == "%" {
			return m, nil
		}
		return math.Floor((a - m) / b), nil
	case "**":
		return math.Pow(a, b), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

func unaryOp(op string, x any) (any, error) {
	if op == "not" {
		return !truthy(x), nil
	}
	if u, ok := x.(Undefined); ok {
		return nil, u.err()
	}
	if i, ok := asInt(x); ok {
		if op == "-" {
			return -i, nil
		}
		return i, nil
	}
	if f, ok := x.(float64); ok {
		if op == "-" {
			return -f, nil
		}
		return f, nil
	}
	return nil, fmt.Errorf("bad operand type for unary %s: '%s'", op, typeName(x))
}

func compareOp(op string, l, r any) (bool, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in":
		return contains(r, l)
	case "notin":
		ok, err := contains(r, l)
		return !ok, err
	}
	c, err := compare(l, r)
	if err != nil {
		return false, err
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown comparison %s", op)
}
