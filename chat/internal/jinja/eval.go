package jinja

import (
	"errors"
	"fmt"
	"strings"
)

// Template is a parsed template, safe for concurrent Render calls.
type Template struct{ body []node }

// Parse compiles Jinja source using the Hugging Face chat-template
// environment settings (trim_blocks, lstrip_blocks, loop controls).
func Parse(src string) (*Template, error) {
	body, err := parse(src)
	if err != nil {
		return nil, err
	}
	return &Template{body: body}, nil
}

// ExceptionError is returned when the template calls raise_exception.
type ExceptionError struct{ Message string }

func (e *ExceptionError) Error() string { return e.Message }

type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

func atLine(line int, err error) error {
	var le *lineError
	var ex *ExceptionError
	if err == nil || errors.As(err, &le) || errors.As(err, &ex) {
		return err
	}
	return &lineError{line: line, err: err}
}

// Render executes the template. vars shadow the built-in globals, as
// template context variables do in Jinja.
func (t *Template) Render(vars map[string]any) (string, error) {
	g := &scope{vars: map[string]any{}}
	for k, v := range builtinGlobals {
		g.vars[k] = v
	}
	for k, v := range vars {
		g.vars[k] = v
	}
	r := &renderer{}
	var b strings.Builder
	if _, err := r.exec(t.body, g, &b); err != nil {
		return "", err
	}
	return b.String(), nil
}

const (
	maxMacroDepth = 200
	maxOutput     = 64 << 20
)

// maxSteps bounds a render's loop iterations and macro calls together:
// two nested range(100000) loops that write nothing, or a macro that calls
// itself twice down 200 levels, would otherwise run for hours on a
// checkpoint's template. A chat template's work grows with the messages
// and tools, linearly in the families' templates: thousands of steps for
// a long conversation. At the limit a render has run ~1 s. (A variable
// so that tests can reach it quickly.)
var maxSteps = 2_000_000

type renderer struct{ depth, steps int }

// step counts one loop iteration or macro call against maxSteps.
func (r *renderer) step() error {
	if r.steps++; r.steps > maxSteps {
		return fmt.Errorf("template runs more than %d loop iterations and macro calls", maxSteps)
	}
	return nil
}

type scope struct {
	vars   map[string]any
	parent *scope
}

func (s *scope) child() *scope { return &scope{vars: map[string]any{}, parent: s} }

func (s *scope) lookup(name string) (any, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

type ctrl uint8

const (
	ctrlNone ctrl = iota
	ctrlBreak
	ctrlContinue
)

type macro struct {
	n     *macroNode
	scope *scope
}

func (r *renderer) exec(nodes []node, sc *scope, out *strings.Builder) (ctrl, error) {
	for _, n := range nodes {
		if out.Len() > maxOutput {
			return ctrlNone, fmt.Errorf("template output exceeds %d bytes", maxOutput)
		}
		switch n := n.(type) {
		case *textNode:
			out.WriteString(n.text)
		case *outputNode:
			v, err := r.eval(n.expr, sc)
			if err != nil {
				return ctrlNone, atLine(n.line, err)
			}
			out.WriteString(toStr(v))
		case *ifNode:
			body := n.els
			for i, c := range n.conds {
				v, err := r.eval(c, sc)
				if err != nil {
					return ctrlNone, err
				}
				if truthy(v) {
					body = n.bodies[i]
					break
				}
			}
			if c, err := r.exec(body, sc, out); c != ctrlNone || err != nil {
				return c, err
			}
		case *forNode:
			if err := r.execFor(n, sc, out); err != nil {
				return ctrlNone, atLine(n.line, err)
			}
		case *setNode:
			if err := r.execSet(n, sc); err != nil {
				return ctrlNone, atLine(n.line, err)
			}
		case *macroNode:
			sc.vars[n.name] = &macro{n: n, scope: sc}
		case *filterBlockNode:
			var b strings.Builder
			if _, err := r.exec(n.body, sc, &b); err != nil {
				return ctrlNone, err
			}
			var v any = b.String()
			for _, f := range n.filters {
				var err error
				if v, err = r.applyFilter(f, v, sc); err != nil {
					return ctrlNone, atLine(n.line, err)
				}
			}
			out.WriteString(toStr(v))
		case *breakNode:
			return ctrlBreak, nil
		case *continueNode:
			return ctrlContinue, nil
		default:
			return ctrlNone, fmt.Errorf("internal error: unknown node %T", n)
		}
	}
	return ctrlNone, nil
}

func bindTargets(sc *scope, names []string, unpack bool, v any) error {
	if !unpack {
		sc.vars[names[0]] = v
		return nil
	}
	items, err := iterate(v)
	if err != nil {
		return fmt.Errorf("cannot unpack: %v", err)
	}
	if len(items) != len(names) {
		return fmt.Errorf("cannot unpack %d values into %d names", len(items), len(names))
	}
	for i, name := range names {
		sc.vars[name] = items[i]
	}
	return nil
}

func (r *renderer) execFor(n *forNode, sc *scope, out *strings.Builder) error {
	v, err := r.eval(n.iter, sc)
	if err != nil {
		return err
	}
	items, err := iterate(v)
	if err != nil {
		return err
	}
	if n.filter != nil {
		kept := items[:0:0]
		for _, it := range items {
			if err := r.step(); err != nil {
				return err
			}
			fsc := sc.child()
			if err := bindTargets(fsc, n.targets, n.unpack, it); err != nil {
				return err
			}
			ok, err := r.eval(n.filter, fsc)
			if err != nil {
				return err
			}
			if truthy(ok) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	for i, it := range items {
		if err := r.step(); err != nil {
			return err
		}
		isc := sc.child()
		if err := bindTargets(isc, n.targets, n.unpack, it); err != nil {
			return err
		}
		isc.vars["loop"] = &loopObj{items: items, i: i}
		c, err := r.exec(n.body, isc, out)
		if err != nil {
			return err
		}
		if c == ctrlBreak {
			break
		}
	}
	if len(items) == 0 && n.els != nil {
		_, err := r.exec(n.els, sc.child(), out)
		return err
	}
	return nil
}

func (r *renderer) execSet(n *setNode, sc *scope) error {
	var v any
	if n.value != nil {
		var err error
		if v, err = r.eval(n.value, sc); err != nil {
			return err
		}
	} else {
		var b strings.Builder
		if _, err := r.exec(n.body, sc, &b); err != nil {
			return err
		}
		v = b.String()
	}
	if n.attr != "" {
		obj, _ := sc.lookup(n.targets[0])
		ns, ok := obj.(*namespace)
		if !ok {
			return fmt.Errorf("cannot assign attribute '%s' on '%s': it is a %s, not a namespace", n.attr, n.targets[0], typeName(obj))
		}
		ns.attrs.Set(n.attr, v)
		return nil
	}
	return bindTargets(sc, n.targets, n.unpack, v)
}

func (r *renderer) callMacro(m *macro, args []any, kw []kwarg) (any, error) {
	n := m.n
	if len(args) > len(n.params) {
		return nil, fmt.Errorf("macro '%s' takes not more than %d argument(s), got %d", n.name, len(n.params), len(args))
	}
	if r.depth >= maxMacroDepth {
		return nil, fmt.Errorf("macro '%s': maximum recursion depth exceeded", n.name)
	}
	if err := r.step(); err != nil {
		return nil, fmt.Errorf("macro '%s': %w", n.name, err)
	}
	msc := m.scope.child()
	for _, k := range kw {
		found := false
		for i, p := range n.params {
			if p == k.name {
				if i < len(args) {
					return nil, fmt.Errorf("macro '%s' got multiple values for argument '%s'", n.name, p)
				}
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("macro '%s' takes no keyword argument '%s'", n.name, k.name)
		}
	}
	for i, p := range n.params {
		if i < len(args) {
			msc.vars[p] = args[i]
			continue
		}
		if v, ok := kwLookup(kw, p); ok {
			msc.vars[p] = v
			continue
		}
		if n.defaults[i] == nil {
			msc.vars[p] = Undefined{hint: fmt.Sprintf("parameter '%s' was not provided", p)}
			continue
		}
		v, err := r.eval(n.defaults[i], msc)
		if err != nil {
			return nil, err
		}
		msc.vars[p] = v
	}
	r.depth++
	defer func() { r.depth-- }()
	var b strings.Builder
	if _, err := r.exec(n.body, msc, &b); err != nil {
		return nil, err
	}
	return b.String(), nil
}

func kwLookup(kw []kwarg, name string) (any, bool) {
	for _, k := range kw {
		if k.name == name {
			return k.val, true
		}
	}
	return nil, false
}

// loopObj is Jinja's `loop` variable.
type loopObj struct {
	items []any
	i     int
}

func (l *loopObj) attr(name string) any {
	n := len(l.items)
	switch name {
	case "index":
		return int64(l.i + 1)
	case "index0":
		return int64(l.i)
	case "revindex":
		return int64(n - l.i)
	case "revindex0":
		return int64(n - l.i - 1)
	case "first":
		return l.i == 0
	case "last":
		return l.i == n-1
	case "length":
		return int64(n)
	case "depth":
		return int64(1)
	case "depth0":
		return int64(0)
	case "previtem":
		if l.i > 0 {
			return l.items[l.i-1]
		}
		return Undefined{hint: "there is no previous item"}
	case "nextitem":
		if l.i < n-1 {
			return l.items[l.i+1]
		}
		return Undefined{hint: "there is no next item"}
	case "cycle":
		return callable(func(_ *renderer, args []any, _ []kwarg) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("loop.cycle needs at least one argument")
			}
			return args[l.i%len(args)], nil
		})
	}
	return Undefined{hint: fmt.Sprintf("'LoopContext' object has no attribute '%s'", name)}
}
