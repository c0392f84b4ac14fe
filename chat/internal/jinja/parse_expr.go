package jinja

import (
	"math/big"
	"slices"
	"strconv"
)

// Expression grammar, lowest precedence first: conditional, or, and, not,
// comparison, + -, ~, * / // %, **, unary, then postfix (.attr, [item],
// calls) with filters and tests binding tightest.

func (p *parser) isTupleEnd(extra []string) bool {
	t := p.cur()
	switch {
	case t.kind == tVarEnd || t.kind == tBlockEnd || t.kind == tEOF:
		return true
	case t.kind == tOp && t.val == ")":
		return true
	case t.kind == tName && slices.Contains(extra, t.val):
		return true
	}
	return false
}

// tuple parses one expression, or a bare tuple `a, b`.
func (p *parser) tuple(withCond, explicitParens bool, extraEnd ...string) (expr, error) {
	var items []expr
	isTuple := false
	for {
		if len(items) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		if p.isTupleEnd(extraEnd) {
			break
		}
		e, err := p.expression(withCond)
		if err != nil {
			return nil, err
		}
		items = append(items, e)
		if !p.isOp(",") {
			break
		}
		isTuple = true
	}
	if !isTuple {
		if len(items) == 1 {
			return items[0], nil
		}
		if !explicitParens {
			return nil, p.errorf("expected an expression, got %s", p.cur())
		}
	}
	return &tupleExpr{items: items}, nil
}

func (p *parser) expression(withCond bool) (expr, error) {
	defer p.leave()
	if err := p.enter(); err != nil {
		return nil, err
	}
	if !withCond {
		return p.or()
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	for p.skipName("if") {
		cond, err := p.or()
		if err != nil {
			return nil, err
		}
		var els expr
		if p.skipName("else") {
			if els, err = p.expression(true); err != nil {
				return nil, err
			}
		}
		e = &condExpr{cond: cond, then: e, els: els}
	}
	return e, nil
}

func (p *parser) or() (expr, error) {
	l, err := p.and()
	for err == nil && p.skipName("or") {
		var r expr
		if r, err = p.and(); err == nil {
			l = &orExpr{l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) and() (expr, error) {
	l, err := p.not()
	for err == nil && p.skipName("and") {
		var r expr
		if r, err = p.not(); err == nil {
			l = &andExpr{l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) not() (expr, error) {
	defer p.leave()
	if err := p.enter(); err != nil {
		return nil, err
	}
	if p.isName("not") {
		line := p.next().line
		x, err := p.not()
		return &unaryExpr{line: line, op: "not", x: x}, err
	}
	return p.compare()
}

func (p *parser) compare() (expr, error) {
	line := p.cur().line
	first, err := p.math1()
	if err != nil {
		return nil, err
	}
	c := &compareExpr{line: line, first: first}
	for {
		t := p.cur()
		var op string
		switch {
		case t.kind == tOp && slices.Contains([]string{"==", "!=", "<", "<=", ">", ">="}, t.val):
			op = t.val
			p.next()
		case p.isName("in"):
			op = "in"
			p.next()
		case p.isName("not") && p.peek().kind == tName && p.peek().val == "in":
			op = "notin"
			p.next()
			p.next()
		}
		if op == "" {
			break
		}
		r, err := p.math1()
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
	}
	if len(c.ops) == 0 {
		return first, nil
	}
	return c, nil
}

func (p *parser) binary(ops []string, operand func() (expr, error)) (expr, error) {
	l, err := operand()
	for err == nil && p.cur().kind == tOp && slices.Contains(ops, p.cur().val) {
		t := p.next()
		var r expr
		if r, err = operand(); err == nil {
			l = &binExpr{line: t.line, op: t.val, l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) math1() (expr, error) { return p.binary([]string{"+", "-"}, p.concat) }

func (p *parser) concat() (expr, error) { return p.binary([]string{"~"}, p.math2) }

func (p *parser) math2() (expr, error) {
	return p.binary([]string{"*", "/", "//", "%"}, p.pow)
}

func (p *parser) pow() (expr, error) {
	return p.binary([]string{"**"}, func() (expr, error) { return p.unary(true) })
}

func (p *parser) unary(withFilter bool) (expr, error) {
	defer p.leave()
	if err := p.enter(); err != nil {
		return nil, err
	}
	var e expr
	var err error
	if t := p.cur(); t.kind == tOp && (t.val == "-" || t.val == "+") {
		p.next()
		var x expr
		if x, err = p.unary(false); err != nil {
			return nil, err
		}
		e = &unaryExpr{line: t.line, op: t.val, x: x}
	} else if e, err = p.primary(); err != nil {
		return nil, err
	}
	if e, err = p.postfix(e); err != nil {
		return nil, err
	}
	if withFilter {
		return p.filterTail(e)
	}
	return e, nil
}

func (p *parser) primary() (expr, error) {
	t := p.cur()
	switch t.kind {
	case tName:
		p.next()
		switch t.val {
		case "true", "True":
			return &literal{val: true}, nil
		case "false", "False":
			return &literal{val: false}, nil
		case "none", "None":
			return &literal{val: nil}, nil
		}
		return &nameExpr{line: t.line, name: t.val}, nil
	case tString:
		s := ""
		for p.cur().kind == tString {
			s += p.next().val
		}
		return &literal{val: s}, nil
	case tInt:
		p.next()
		if i, err := strconv.ParseInt(t.val, 10, 64); err == nil {
			return &literal{val: i}, nil
		}
		b, ok := new(big.Int).SetString(t.val, 10)
		if !ok {
			return nil, p.errorf("invalid integer %q", t.val)
		}
		return &literal{val: b}, nil
	case tFloat:
		p.next()
		f, err := strconv.ParseFloat(t.val, 64)
		if err != nil {
			return nil, p.errorf("invalid float %q", t.val)
		}
		return &literal{val: f}, nil
	case tOp:
		switch t.val {
		case "(":
			p.next()
			e, err := p.tuple(true, true)
			if err != nil {
				return nil, err
			}
			return e, p.expectOp(")")
		case "[":
			p.next()
			items, err := p.list("]")
			return &listExpr{items: items}, err
		case "{":
			p.next()
			d := &dictExpr{}
			for !p.isOp("}") {
				if len(d.keys) > 0 {
					if err := p.expectOp(","); err != nil {
						return nil, err
					}
					if p.isOp("}") {
						break
					}
				}
				k, err := p.expression(true)
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.expression(true)
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
			}
			p.next()
			return d, nil
		}
	}
	return nil, p.errorf("unexpected %s", t)
}

func (p *parser) list(closer string) ([]expr, error) {
	var items []expr
	for !p.isOp(closer) {
		if len(items) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
			if p.isOp(closer) {
				break
			}
		}
		e, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		items = append(items, e)
	}
	p.next()
	return items, nil
}

func (p *parser) postfix(e expr) (expr, error) {
	for {
		t := p.cur()
		switch {
		case t.kind == tOp && t.val == ".":
			p.next()
			switch a := p.next(); a.kind {
			case tName:
				e = &attrExpr{line: t.line, obj: e, name: a.val}
			case tInt:
				i, _ := strconv.ParseInt(a.val, 10, 64)
				e = &itemExpr{line: t.line, obj: e, key: &literal{val: i}}
			default:
				return nil, p.errorf("expected an attribute name after '.', got %s", a)
			}
		case t.kind == tOp && t.val == "[":
			p.next()
			sub, err := p.subscript(t.line, e)
			if err != nil {
				return nil, err
			}
			e = sub
		case t.kind == tOp && t.val == "(":
			c, err := p.call(e)
			if err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}

func (p *parser) subscript(line int, obj expr) (expr, error) {
	var parts []expr // nil entry marks an omitted slice bound
	colons := 0
	if !p.isOp(":") {
		e, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		if p.skipOp("]") {
			return &itemExpr{line: line, obj: obj, key: e}, nil
		}
		if p.isOp(",") {
			p.next()
			rest, err := p.list("]")
			return &itemExpr{line: line, obj: obj, key: &tupleExpr{items: append([]expr{e}, rest...)}}, err
		}
		parts = append(parts, e)
	} else {
		parts = append(parts, nil)
	}
	for p.skipOp(":") {
		colons++
		if colons > 2 {
			return nil, p.errorf("too many ':' in slice")
		}
		if p.isOp(":") || p.isOp("]") {
			parts = append(parts, nil)
			continue
		}
		e, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		parts = append(parts, e)
	}
	if err := p.expectOp("]"); err != nil {
		return nil, err
	}
	for len(parts) < 3 {
		parts = append(parts, nil)
	}
	return &sliceExpr{line: line, obj: obj, start: parts[0], stop: parts[1], step: parts[2]}, nil
}

func (p *parser) callArgs() ([]expr, []kwExpr, error) {
	if err := p.expectOp("("); err != nil {
		return nil, nil, err
	}
	var args []expr
	var kw []kwExpr
	for !p.isOp(")") {
		if len(args)+len(kw) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, nil, err
			}
			if p.isOp(")") {
				break
			}
		}
		if p.isOp("*") || p.isOp("**") {
			return nil, nil, p.errorf("*args and **kwargs in calls are not supported")
		}
		if p.cur().kind == tName && p.peek().kind == tOp && p.peek().val == "=" {
			name := p.next().val
			p.next()
			v, err := p.expression(true)
			if err != nil {
				return nil, nil, err
			}
			kw = append(kw, kwExpr{name: name, val: v})
			continue
		}
		if len(kw) > 0 {
			return nil, nil, p.errorf("positional argument follows keyword argument")
		}
		v, err := p.expression(true)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, v)
	}
	p.next()
	return args, kw, nil
}

func (p *parser) call(fn expr) (expr, error) {
	line := p.cur().line
	args, kw, err := p.callArgs()
	return &callExpr{line: line, fn: fn, args: args, kw: kw}, err
}

func (p *parser) filterTail(e expr) (expr, error) {
	for {
		var err error
		switch {
		case p.isOp("|"):
			e, err = p.filter(e)
		case p.isName("is"):
			e, err = p.test(e)
		case p.isOp("("):
			e, err = p.call(e)
		default:
			return e, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (p *parser) filter(e expr) (expr, error) {
	p.next() // '|'
	return p.filterCall(e)
}

func (p *parser) dottedName() (string, error) {
	name, err := p.expectName()
	for err == nil && p.isOp(".") {
		p.next()
		var part string
		part, err = p.expectName()
		name += "." + part
	}
	return name, err
}

func (p *parser) filterCall(e expr) (*filterExpr, error) {
	line := p.cur().line
	name, err := p.dottedName()
	if err != nil {
		return nil, err
	}
	f := &filterExpr{line: line, obj: e, name: name}
	if p.isOp("(") {
		if f.args, f.kw, err = p.callArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (p *parser) test(e expr) (expr, error) {
	line := p.next().line // 'is'
	t := &testExpr{line: line, obj: e}
	t.negated = p.skipName("not")
	var err error
	if t.name, err = p.dottedName(); err != nil {
		return nil, err
	}
	cur := p.cur()
	switch {
	case p.isOp("("):
		var kw []kwExpr
		if t.args, kw, err = p.callArgs(); err != nil {
			return nil, err
		}
		if len(kw) > 0 {
			return nil, p.errorf("keyword arguments to tests are not supported")
		}
	case cur.kind == tName && cur.val != "else" && cur.val != "or" && cur.val != "and",
		cur.kind == tString || cur.kind == tInt || cur.kind == tFloat,
		cur.kind == tOp && (cur.val == "[" || cur.val == "{"):
		if cur.kind == tName && cur.val == "is" {
			return nil, p.errorf("cannot chain multiple tests with 'is'")
		}
		arg, err := p.primary()
		if err != nil {
			return nil, err
		}
		if arg, err = p.postfix(arg); err != nil {
			return nil, err
		}
		t.args = []expr{arg}
	}
	return t, nil
}
