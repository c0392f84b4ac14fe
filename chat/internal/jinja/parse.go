package jinja

import (
	"fmt"
	"slices"
	"strings"
)

// The grammar and operator precedence follow Jinja's parser.py so that
// templates written against Jinja (e.g. `messages|length - 1`, where the
// filter binds tighter than the minus) mean the same thing here.

type parser struct {
	toks  []token
	pos   int
	depth int
}

// maxNesting bounds recursion on hostile template source; Go cannot
// recover from exhausting its stack.
const maxNesting = 200

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxNesting {
		return p.errorf("template nests more than %d levels deep", maxNesting)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) cur() token  { return p.toks[p.pos] }
func (p *parser) peek() token { return p.toks[min(p.pos+1, len(p.toks)-1)] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if p.pos < len(p.toks)-1 {
		p.pos++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.cur().line, fmt.Sprintf(format, args...))
}

func (p *parser) isOp(op string) bool  { t := p.cur(); return t.kind == tOp && t.val == op }
func (p *parser) isName(n string) bool { t := p.cur(); return t.kind == tName && t.val == n }

func (p *parser) skipOp(op string) bool {
	if !p.isOp(op) {
		return false
	}
	p.next()
	return true
}

func (p *parser) skipName(n string) bool {
	if !p.isName(n) {
		return false
	}
	p.next()
	return true
}

func (p *parser) expectOp(op string) error {
	if !p.skipOp(op) {
		return p.errorf("expected '%s', got %s", op, p.cur())
	}
	return nil
}

func (p *parser) expectKind(k tokKind, what string) error {
	if p.cur().kind != k {
		return p.errorf("expected %s, got %s", what, p.cur())
	}
	p.next()
	return nil
}

func (p *parser) expectBlockEnd() error { return p.expectKind(tBlockEnd, "'%}'") }

func (p *parser) expectName() (string, error) {
	t := p.cur()
	if t.kind != tName {
		return "", p.errorf("expected a name, got %s", t)
	}
	p.next()
	return t.val, nil
}

func parse(src string) ([]node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	body, _, err := p.body()
	return body, err
}

// body parses nodes until one of the end keywords opens a block tag; it
// returns that keyword with the parser positioned just after it.
func (p *parser) body(ends ...string) ([]node, string, error) {
	defer p.leave()
	if err := p.enter(); err != nil {
		return nil, "", err
	}
	var out []node
	for {
		t := p.cur()
		switch t.kind {
		case tEOF:
			if len(ends) > 0 {
				return nil, "", p.errorf("unexpected end of template, expected '%s'", strings.Join(ends, "' or '"))
			}
			return out, "", nil
		case tText:
			p.next()
			out = append(out, &textNode{text: t.val})
		case tVarBegin:
			p.next()
			e, err := p.tuple(true, false)
			if err != nil {
				return nil, "", err
			}
			if err := p.expectKind(tVarEnd, "'}}'"); err != nil {
				return nil, "", err
			}
			out = append(out, &outputNode{line: t.line, expr: e})
		case tBlockBegin:
			p.next()
			kw, err := p.expectName()
			if err != nil {
				return nil, "", err
			}
			if slices.Contains(ends, kw) {
				return out, kw, nil
			}
			n, err := p.statement(kw)
			if err != nil {
				return nil, "", err
			}
			out = append(out, n)
		default:
			return nil, "", p.errorf("unexpected %s", t)
		}
	}
}

func (p *parser) statement(kw string) (node, error) {
	switch kw {
	case "if":
		return p.ifStmt()
	case "for":
		return p.forStmt()
	case "set":
		return p.setStmt()
	case "macro":
		return p.macroStmt()
	case "filter":
		return p.filterStmt()
	case "break", "continue":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		if kw == "break" {
			return &breakNode{}, nil
		}
		return &continueNode{}, nil
	case "generation":
		// Hugging Face's assistant-mask extension; the body renders as is.
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, _, err := p.body("endgeneration")
		if err != nil {
			return nil, err
		}
		return &ifNode{conds: []expr{&literal{val: true}}, bodies: [][]node{body}}, p.expectBlockEnd()
	case "call", "include", "import", "from", "extends", "block", "with", "do", "autoescape":
		return nil, p.errorf("tag '%s' is not supported", kw)
	}
	return nil, p.errorf("unknown or unexpected tag '%s'", kw)
}

func (p *parser) ifStmt() (node, error) {
	n := &ifNode{}
	for {
		cond, err := p.tuple(false, false)
		if err != nil {
			return nil, err
		}
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, kw, err := p.body("elif", "else", "endif")
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch kw {
		case "elif":
			continue
		case "else":
			if err := p.expectBlockEnd(); err != nil {
				return nil, err
			}
			if n.els, _, err = p.body("endif"); err != nil {
				return nil, err
			}
		}
		return n, p.expectBlockEnd()
	}
}

// assignTargets parses `x`, `a, b` or `(a, b)`.
func (p *parser) assignTargets() ([]string, bool, error) {
	paren := p.skipOp("(")
	var names []string
	unpack := paren
	for {
		n, err := p.expectName()
		if err != nil {
			return nil, false, err
		}
		names = append(names, n)
		if !p.skipOp(",") {
			break
		}
		unpack = true
		if paren && p.isOp(")") || p.isName("in") || p.isOp("=") {
			break
		}
	}
	if paren {
		if err := p.expectOp(")"); err != nil {
			return nil, false, err
		}
	}
	return names, unpack, nil
}

func (p *parser) forStmt() (node, error) {
	n := &forNode{line: p.cur().line}
	var err error
	if n.targets, n.unpack, err = p.assignTargets(); err != nil {
		return nil, err
	}
	if !p.skipName("in") {
		return nil, p.errorf("expected 'in' in for loop, got %s", p.cur())
	}
	if n.iter, err = p.tuple(false, false, "recursive"); err != nil {
		return nil, err
	}
	if p.skipName("if") {
		if n.filter, err = p.expression(true); err != nil {
			return nil, err
		}
	}
	if p.isName("recursive") {
		return nil, p.errorf("recursive for loops are not supported")
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, kw, err := p.body("endfor", "else")
	if err != nil {
		return nil, err
	}
	n.body = body
	if kw == "else" {
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		if n.els, _, err = p.body("endfor"); err != nil {
			return nil, err
		}
	}
	return n, p.expectBlockEnd()
}

func (p *parser) setStmt() (node, error) {
	n := &setNode{line: p.cur().line}
	if p.cur().kind == tName && p.peek().kind == tOp && p.peek().val == "." {
		n.targets = []string{p.next().val}
		p.next()
		attr, err := p.expectName()
		if err != nil {
			return nil, err
		}
		n.attr = attr
	} else {
		var err error
		if n.targets, n.unpack, err = p.assignTargets(); err != nil {
			return nil, err
		}
	}
	if p.skipOp("=") {
		v, err := p.tuple(true, false)
		if err != nil {
			return nil, err
		}
		n.value = v
		return n, p.expectBlockEnd()
	}
	if n.attr != "" || n.unpack {
		return nil, p.errorf("block set needs a single plain name")
	}
	var filters []*filterExpr
	for p.isOp("|") {
		f, err := p.filter(nil)
		if err != nil {
			return nil, err
		}
		filters = append(filters, f.(*filterExpr))
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, _, err := p.body("endset")
	if err != nil {
		return nil, err
	}
	n.body = body
	if len(filters) > 0 {
		n.body = []node{&filterBlockNode{line: n.line, filters: filters, body: body}}
	}
	return n, p.expectBlockEnd()
}

func (p *parser) macroStmt() (node, error) {
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	n := &macroNode{name: name}
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	for !p.isOp(")") {
		if len(n.params) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
			if p.isOp(")") {
				break
			}
		}
		param, err := p.expectName()
		if err != nil {
			return nil, err
		}
		var def expr
		if p.skipOp("=") {
			if def, err = p.expression(true); err != nil {
				return nil, err
			}
		} else if len(n.defaults) > 0 && n.defaults[len(n.defaults)-1] != nil {
			return nil, p.errorf("non-default argument '%s' follows default argument", param)
		}
		n.params = append(n.params, param)
		n.defaults = append(n.defaults, def)
	}
	p.next()
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	if n.body, _, err = p.body("endmacro"); err != nil {
		return nil, err
	}
	p.skipName(name)
	return n, p.expectBlockEnd()
}

func (p *parser) filterStmt() (node, error) {
	n := &filterBlockNode{line: p.cur().line}
	for {
		f, err := p.filterCall(nil)
		if err != nil {
			return nil, err
		}
		n.filters = append(n.filters, f)
		if !p.skipOp("|") {
			break
		}
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	var err error
	if n.body, _, err = p.body("endfilter"); err != nil {
		return nil, err
	}
	return n, p.expectBlockEnd()
}
