package jinja

import (
	"fmt"
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
