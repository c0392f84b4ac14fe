package jinja

// Statement nodes.
type (
	node any

	textNode   struct{ text string }
	outputNode struct {
		line int
		expr expr
	}
	ifNode struct {
		conds  []expr
		bodies [][]node
		els    []node
	}
	forNode struct {
		line    int
		targets []string // one name, or several for tuple unpacking
		unpack  bool
		iter    expr
		filter  expr
		body    []node
		els     []node
	}
	setNode struct {
		line    int
		targets []string // name, or several for tuple unpacking
		unpack  bool
		attr    string // set ns.attr = …: targets[0] is the namespace
		value   expr
		body    []node // block form {% set x %}…{% endset %}
	}
	macroNode struct {
		name     string
		params   []string
		defaults []expr // aligned with params; nil when required
		body     []node
	}
	filterBlockNode struct {
		line    int
		filters []*filterExpr // applied in order; their operand is ignored
		body    []node
	}
	breakNode    struct{}
	continueNode struct{}
)

// Expression nodes.
type (
	expr any

	literal  struct{ val any }
	nameExpr struct {
		line int
		name string
	}
	attrExpr struct {
		line int
		obj  expr
		name string
	}
	itemExpr struct {
		line int
		obj  expr
		key  expr
	}
	sliceExpr struct {
		line              int
		obj               expr
		start, stop, step expr // nil when omitted
	}
	callExpr struct {
		line int
		fn   expr
		args []expr
		kw   []kwExpr
	}
	kwExpr struct {
		name string
		val  expr
	}
	filterExpr struct {
		line int
		obj  expr // nil inside {% filter %} blocks
		name string
		args []expr
		kw   []kwExpr
	}
	testExpr struct {
		line    int
		obj     expr
		name    string
		args    []expr
		negated bool
	}
	binExpr struct {
		line int
		op   string
		l, r expr
	}
	unaryExpr struct {
		line int
		op   string // "not", "-", "+"
		x    expr
	}
	compareExpr struct {
		line  int
		first expr
		ops   []string // ==, !=, <, <=, >, >=, in, notin
		rest  []expr
	}
	andExpr  struct{ l, r expr }
	orExpr   struct{ l, r expr }
	condExpr struct {
		cond, then, els expr // els nil → undefined
	}
	listExpr  struct{ items []expr }
	tupleExpr struct{ items []expr }
	dictExpr  struct {
		keys, vals []expr
	}
)
