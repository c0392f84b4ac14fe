package jinja

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

func (r *renderer) eval(e expr, sc *scope) (any, error) {
	switch e := e.(type) {
	case *literal:
		return e.val, nil
	case *nameExpr:
		if v, ok := sc.lookup(e.name); ok {
			return v, nil
		}
		return Undefined{hint: fmt.Sprintf("'%s' is undefined", e.name)}, nil
	case *attrExpr:
		obj, err := r.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		v, err := getAttr(obj, e.name)
		return v, atLine(e.line, err)
	case *itemExpr:
		obj, err := r.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		key, err := r.eval(e.key, sc)
		if err != nil {
			return nil, err
		}
		v, err := getItem(obj, key)
		return v, atLine(e.line, err)
	case *sliceExpr:
		return r.evalSlice(e, sc)
	case *callExpr:
		fn, err := r.eval(e.fn, sc)
		if err != nil {
			return nil, err
		}
		args, kw, err := r.evalArgs(e.args, e.kw, sc)
		if err != nil {
			return nil, err
		}
		v, err := r.call(fn, args, kw)
		return v, atLine(e.line, err)
	case *filterExpr:
		obj, err := r.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		v, err := r.applyFilter(e, obj, sc)
		return v, atLine(e.line, err)
	case *testExpr:
		obj, err := r.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		args, _, err := r.evalArgs(e.args, nil, sc)
		if err != nil {
			return nil, err
		}
		ok, err := runTest(r, e.name, obj, args)
		if err != nil {
			return nil, atLine(e.line, err)
		}
		return ok != e.negated, nil
	case *binExpr:
		l, err := r.eval(e.l, sc)
		if err != nil {
			return nil, err
		}
		rv, err := r.eval(e.r, sc)
		if err != nil {
			return nil, err
		}
		v, err := binaryOp(e.op, l, rv)
		return v, atLine(e.line, err)
	case *unaryExpr:
		x, err := r.eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		v, err := unaryOp(e.op, x)
		return v, atLine(e.line, err)
	case *compareExpr:
		l, err := r.eval(e.first, sc)
		if err != nil {
			return nil, err
		}
		for i, op := range e.ops {
			rv, err := r.eval(e.rest[i], sc)
			if err != nil {
				return nil, err
			}
			ok, err := compareOp(op, l, rv)
			if err != nil {
				return nil, atLine(e.line, err)
			}
			if !ok {
				return false, nil
			}
			l = rv
		}
		return true, nil
	case *andExpr:
		l, err := r.eval(e.l, sc)
		if err != nil || !truthy(l) {
			return l, err
		}
		return r.eval(e.r, sc)
	case *orExpr:
		l, err := r.eval(e.l, sc)
		if err != nil || truthy(l) {
			return l, err
		}
		return r.eval(e.r, sc)
	case *condExpr:
		c, err := r.eval(e.cond, sc)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(e.then, sc)
		}
		if e.els == nil {
			return Undefined{hint: "the inline if-expression has no else branch"}, nil
		}
		return r.eval(e.els, sc)
	case *listExpr:
		out := make([]any, len(e.items))
		for i, it := range e.items {
			v, err := r.eval(it, sc)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *tupleExpr:
		out := make(Tuple, len(e.items))
		for i, it := range e.items {
			v, err := r.eval(it, sc)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range e.keys {
			k, err := r.eval(e.keys[i], sc)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("dict keys must be strings, got %s", typeName(k))
			}
			v, err := r.eval(e.vals[i], sc)
			if err != nil {
				return nil, err
			}
			d.Set(ks, v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("internal error: unknown expression %T", e)
}

func (r *renderer) evalArgs(exprs []expr, kws []kwExpr, sc *scope) ([]any, []kwarg, error) {
	args := make([]any, len(exprs))
	for i, a := range exprs {
		v, err := r.eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		args[i] = v
	}
	var kw []kwarg
	for _, k := range kws {
		v, err := r.eval(k.val, sc)
		if err != nil {
			return nil, nil, err
		}
		kw = append(kw, kwarg{name: k.name, val: v})
	}
	return args, kw, nil
}

func (r *renderer) call(fn any, args []any, kw []kwarg) (any, error) {
	switch f := fn.(type) {
	case callable:
		return f(r, args, kw)
	case *macro:
		return r.callMacro(f, args, kw)
	case Undefined:
		return nil, f.err()
	}
	return nil, fmt.Errorf("'%s' object is not callable", typeName(fn))
}

// getAttr is `obj.name`: Python attributes (methods) win over dict keys.
func getAttr(obj any, name string) (any, error) {
	switch o := obj.(type) {
	case Undefined:
		return nil, o.err()
	case *Dict:
		if m := method(obj, name); m != nil {
			return m, nil
		}
		if v, ok := o.m[name]; ok {
			return v, nil
		}
	case *namespace:
		if v, ok := o.attrs.Get(name); ok {
			return v, nil
		}
	case *loopObj:
		return o.attr(name), nil
	default:
		if m := method(obj, name); m != nil {
			return m, nil
		}
	}
	return Undefined{hint: fmt.Sprintf("'%s object' has no attribute '%s'", typeName(obj), name)}, nil
}

// getItem is `obj[key]`: items win over attributes.
func getItem(obj any, key any) (any, error) {
	switch o := obj.(type) {
	case Undefined:
		return nil, o.err()
	case *Dict:
		if k, ok := key.(string); ok {
			if v, ok := o.m[k]; ok {
				return v, nil
			}
		}
	case []any, Tuple, string:
		if i, ok := asInt(key); ok {
			if s, isStr := o.(string); isStr {
				rs := []rune(s)
				if i < 0 {
					i += int64(len(rs))
				}
				if i >= 0 && i < int64(len(rs)) {
					return string(rs[i]), nil
				}
			} else {
				items, _ := seqItems(o)
				if i < 0 {
					i += int64(len(items))
				}
				if i >= 0 && i < int64(len(items)) {
					return items[i], nil
				}
			}
			return Undefined{hint: fmt.Sprintf("%s index %d out of range", typeName(obj), i)}, nil
		}
	}
	if k, ok := key.(string); ok {
		return getAttr(obj, k)
	}
	return Undefined{hint: fmt.Sprintf("'%s object' has no item %s", typeName(obj), repr(key))}, nil
}

func (r *renderer) evalSlice(e *sliceExpr, sc *scope) (any, error) {
	obj, err := r.eval(e.obj, sc)
	if err != nil {
		return nil, err
	}
	bound := func(x expr) (*int64, error) {
		if x == nil {
			return nil, nil
		}
		v, err := r.eval(x, sc)
		if err != nil || v == nil {
			return nil, err
		}
		i, ok := asInt(v)
		if !ok {
			return nil, fmt.Errorf("slice indices must be integers or None, got %s", typeName(v))
		}
		return &i, nil
	}
	start, err := bound(e.start)
	if err != nil {
		return nil, atLine(e.line, err)
	}
	stop, err := bound(e.stop)
	if err != nil {
		return nil, atLine(e.line, err)
	}
	step, err := bound(e.step)
	if err != nil {
		return nil, atLine(e.line, err)
	}
	var items []any
	switch o := obj.(type) {
	case Undefined:
		return nil, atLine(e.line, o.err())
	case string:
		items, _ = iterate(o)
	case []any:
		items = o
	case Tuple:
		items = o
	default:
		return nil, atLine(e.line, fmt.Errorf("'%s' object is not subscriptable", typeName(obj)))
	}
	idx, err := sliceIndices(len(items), start, stop, step)
	if err != nil {
		return nil, atLine(e.line, err)
	}
	out := make([]any, len(idx))
	for i, j := range idx {
		out[i] = items[j]
	}
	switch obj.(type) {
	case string:
		var b strings.Builder
		for _, c := range out {
			b.WriteString(c.(string))
		}
		return b.String(), nil
	case Tuple:
		return Tuple(out), nil
	}
	return out, nil
}

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
