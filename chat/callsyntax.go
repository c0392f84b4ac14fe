package chat

// CallSyntax is a format's tool-call markup spelled as the literal pieces
// around a call's name and arguments, for a grammar that holds a reply to
// tool calls (the server's forced tool_choice). A reply reads
//
//	Open NAME [":" INDEX] NameEnd ARGS CallEnd (Again NAME … CallEnd)* Close
//
// where ARGS is, for markup arguments (Param set),
//
//	(ParamOpen KEY ParamMid VALUE ValueEnd AfterValue)*
//
// with VALUE free text, and otherwise one JSON object. Every reply of this
// language parses (with the format's parser) into calls of the named
// functions; the grammar restricts it further to the offered functions,
// their parameters, and the required ones.
type CallSyntax struct {
	// Lead separates the end of the reasoning from the first call, as the
	// template writes it (only the grammar's injected opening uses it).
	Lead string
	// Open begins the first call (with the section's opening, if any),
	// Again each further one.
	Open, Again string
	// Index: the name is followed by ":" and the call's number in the
	// conversation (Kimi-K2's call IDs, functions.NAME:INDEX).
	Index bool
	// NameEnd follows the function's name (and index).
	NameEnd string
	// Param: arguments are markup elements, not a JSON object.
	Param                                     bool
	ParamOpen, ParamMid, ValueEnd, AfterValue string
	// CallEnd ends each call and Close the section of calls ("" when the
	// calls are not in a section: then the turn may end after any call).
	CallEnd, Close string
	// Tags are the parser's tags, which may not appear in the reasoning or
	// in an argument's text (the end of a value excepted).
	Tags []string
}
