package server

import "strings"

// jsonState reads one JSON value of a call's arguments byte by byte, so
// that the grammar admits exactly the values encoding/json accepts (the
// parsers' test of the arguments), without their tags in strings.
type jsonState struct {
	st    jsState
	depth uint8
	stack uint32 // bit d: nesting level d is an array (else an object)
	key   bool   // the string is an object's key
	hex   uint8  // \u digits still to come
	space uint8  // spaces in a row
	word  string // the rest of true, false or null
	// digits in the number's current part. Bounding them keeps every
	// number a float64 (at most 16 digits before and after the point, 2
	// in the exponent: under 1e116), which clients decode.
	digits uint8
	// want is the JSON schema type of the argument ("" for any), which
	// its first byte decides (and, for "integer", no fraction or exponent).
	want string
}

type jsState uint8

const (
	jsValue  jsState = iota // a value starts (after spaces)
	jsArray                 // after "[": a value or "]"
	jsObject                // after "{": a key or "}"
	jsKey                   // after "," in an object: a key
	jsColon                 // after a key
	jsAfter                 // after a value in an array or object
	jsString                // inside a string
	jsEscape                // after "\"
	jsHex                   // in \uXXXX
	jsWord                  // in true, false or null
	jsMinus                 // "-"
	jsZero                  // "0" or "-0": a number that may end
	jsInt                   // integer digits: may end
	jsDot                   // "."
	jsFrac                  // fraction digits: may end
	jsE                     // "e"
	jsESign                 // "e" and its sign
	jsExp                   // exponent digits: may end
)

// stepJSON takes c in a JSON value; it reports false when c is not the
// value's (a number ended before it) and the value is over.
func (g *callGrammar) stepJSON(st *gstate, c byte) bool {
	j := &st.json
	bad := func() bool { st.ph = phBad; return true }
	if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
		switch j.st {
		case jsValue, jsArray, jsObject, jsKey, jsColon, jsAfter:
			if j.space++; j.space > maxSpace {
				return bad()
			}
			return true
		}
	} else if j.st <= jsAfter {
		j.space = 0
	}
	switch j.st {
	case jsValue, jsArray:
		if c == ']' && j.st == jsArray {
			return g.close(st)
		}
		return g.startValue(st, c)
	case jsObject, jsKey:
		switch {
		case c == '}' && j.st == jsObject:
			return g.close(st)
		case c == '"':
			j.st, j.key, st.tail = jsString, true, ""
			return true
		}
		return bad()
	case jsColon:
		if c != ':' {
			return bad()
		}
		j.st = jsValue
		return true
	case jsAfter:
		array := j.stack&(1<<(j.depth-1)) != 0
		switch {
		case c == ',' && array:
			j.st = jsValue
		case c == ',':
			j.st = jsKey
		case c == ']' && array, c == '}' && !array:
			return g.close(st)
		default:
			return bad()
		}
		return true
	case jsString:
		switch {
		case c == '"':
			if j.key {
				j.st, j.key = jsColon, false
				return true
			}
			g.valueDone(st)
		case c == '\\':
			j.st = jsEscape
		case c < 0x20:
			return bad()
		default:
			st.tail = keepTail(st.tail, c, g.maxTail)
			for _, tag := range g.sx.Tags {
				if strings.HasSuffix(st.tail, tag) {
					return bad()
				}
			}
		}
		return true
	case jsEscape:
		switch {
		case c == 'u':
			j.st, j.hex = jsHex, 4
		case strings.IndexByte(`"\/bfnrt`, c) >= 0:
			j.st = jsString
		default:
			return bad()
		}
		return true
	case jsHex:
		if !isHex(c) {
			return bad()
		}
		if j.hex--; j.hex == 0 {
			j.st = jsString
		}
		return true
	case jsWord:
		if c != j.word[0] {
			return bad()
		}
		if j.word = j.word[1:]; j.word == "" {
			g.valueDone(st)
		}
		return true
	}
	return g.stepNumber(st, c)
}

// startValue takes the first byte of a value.
func (g *callGrammar) startValue(st *gstate, c byte) bool {
	j := &st.json
	if j.depth == 0 && j.want != "" && !strings.ContainsRune(typeStarts[j.want], rune(c)) {
		st.ph = phBad
		return true
	}
	switch {
	case c == '{' || c == '[':
		if j.depth >= maxDepth {
			st.ph = phBad
			return true
		}
		j.st = jsObject
		j.stack &^= 1 << j.depth
		if c == '[' {
			j.st = jsArray
			j.stack |= 1 << j.depth
		}
		j.depth++
	case c == '"':
		j.st, j.key, st.tail = jsString, false, ""
	case c == 't', c == 'f', c == 'n':
		j.st, j.word = jsWord, map[byte]string{'t': "rue", 'f': "alse", 'n': "ull"}[c]
	case c == '-':
		j.st = jsMinus
	case c == '0':
		j.st, j.digits = jsZero, 1
	case c >= '1' && c <= '9':
		j.st, j.digits = jsInt, 1
	default:
		st.ph = phBad
	}
	return true
}

// typeStarts are the first bytes of a value of each JSON schema type.
var typeStarts = map[string]string{"string": `"`, "number": "-0123456789", "integer": "-0123456789",
	"boolean": "tf", "null": "n", "array": "[", "object": "{"}

// stepNumber takes c in a number; a byte that cannot continue a number
// that may end there ends it, and is left to what follows.
func (g *callGrammar) stepNumber(st *gstate, c byte) bool {
	j := &st.json
	digit := c >= '0' && c <= '9'
	next := jsState(255)
	switch j.st {
	case jsMinus:
		if c == '0' {
			next = jsZero
		} else if digit {
			next = jsInt
		}
	case jsZero, jsInt:
		switch {
		case digit && j.st == jsInt:
			next = jsInt
		case c == '.':
			next = jsDot
		case c == 'e' || c == 'E':
			next = jsE
		}
	case jsDot, jsFrac:
		if digit {
			next = jsFrac
		} else if j.st == jsFrac && (c == 'e' || c == 'E') {
			next = jsE
		}
	case jsE:
		if c == '+' || c == '-' {
			next = jsESign
		} else if digit {
			next = jsExp
		}
	case jsESign, jsExp:
		if digit {
			next = jsExp
		}
	}
	if (next == jsDot || next == jsE) && j.depth == 0 && j.want == "integer" {
		next = 255
	}
	switch {
	case next != 255:
		switch {
		case !digit:
			j.digits = 0
		case next == j.st:
			j.digits++
		default:
			j.digits = 1
		}
		if j.digits > 16 || next == jsExp && j.digits > 2 {
			st.ph = phBad
			return true
		}
		j.st = next
		return true
	case j.st == jsZero || j.st == jsInt || j.st == jsFrac || j.st == jsExp:
		g.valueDone(st)
		return false
	}
	st.ph = phBad
	return true
}

// close ends the innermost array or object.
func (g *callGrammar) close(st *gstate) bool {
	st.json.depth--
	g.valueDone(st)
	return true
}

// valueDone ends a value: inside an array or object, what follows it;
// at the top, the argument.
func (g *callGrammar) valueDone(st *gstate) {
	if st.json.depth > 0 {
		st.json.st, st.json.space = jsAfter, 0
		return
	}
	st.ph, st.sl, st.lit = phLit, slArgs, ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
