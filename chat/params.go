package chat

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// toolSchemas maps function name → parameter name → JSON-Schema types.
type toolSchemas map[string]map[string][]string

func newToolSchemas(tools []Tool) toolSchemas {
	out := toolSchemas{}
	for _, t := range tools {
		var params struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		// A malformed schema only loses typing: values stay strings.
		_ = json.Unmarshal(t.Function.Parameters, &params)
		props := map[string][]string{}
		for name, schema := range params.Properties {
			props[name] = schemaTypes(schema, 0)
		}
		out[t.Function.Name] = props
	}
	return out
}

// lookup returns the types of a parameter; nil means unknown (keep text).
func (s toolSchemas) lookup(fn, param string) []string {
	return s[fn][param]
}

func schemaTypes(raw json.RawMessage, depth int) []string {
	var s struct {
		Type       json.RawMessage   `json:"type"`
		AnyOf      []json.RawMessage `json:"anyOf"`
		OneOf      []json.RawMessage `json:"oneOf"`
		Enum       []any             `json:"enum"`
		Properties json.RawMessage   `json:"properties"`
		Items      json.RawMessage   `json:"items"`
	}
	if depth > 8 || json.Unmarshal(raw, &s) != nil {
		return nil
	}
	var types []string
	var one string
	var many []string
	switch {
	case json.Unmarshal(s.Type, &one) == nil:
		types = []string{one}
	case json.Unmarshal(s.Type, &many) == nil:
		types = many
	case len(s.AnyOf)+len(s.OneOf) > 0:
		for _, sub := range append(s.AnyOf, s.OneOf...) {
			types = append(types, schemaTypes(sub, depth+1)...)
		}
	case len(s.Enum) > 0:
		for _, v := range s.Enum {
			switch v.(type) {
			case string:
				types = append(types, "string")
			case float64:
				types = append(types, "number")
			case bool:
				types = append(types, "boolean")
			case nil:
				types = append(types, "null")
			}
		}
	case s.Properties != nil:
		types = []string{"object"}
	case s.Items != nil:
		types = []string{"array"}
	}
	for i, t := range types {
		types[i] = normalizeType(t)
	}
	return types
}

// normalizeType folds the loose type names models and clients use (the same
// families vLLM's qwen3_coder parser accepts) onto JSON-Schema names.
func normalizeType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	switch {
	case t == "integer" || strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") ||
		t == "long" || t == "short" || t == "unsigned":
		return "integer"
	case t == "number" || strings.HasPrefix(t, "float") || t == "double" || t == "num":
		return "number"
	case t == "boolean" || t == "bool":
		return "boolean"
	case t == "object" || t == "dict" || t == "map":
		return "object"
	case t == "array" || t == "list":
		return "array"
	case t == "null":
		return "null"
	}
	return "string"
}

// paramValue converts a <parameter=…> body to JSON text. The single newline
// that the format puts after the opening tag and before the closing tag is
// framing, not value.
func paramValue(raw string, types []string) string {
	v := strings.TrimPrefix(raw, "\n")
	return typedValue(strings.TrimSuffix(v, "\n"), types)
}

// typedValue converts a parameter's text to JSON text of the first of its
// schema types the text reads as; a string when none does, or when there is
// no schema.
func typedValue(v string, types []string) string {
	if len(types) == 0 {
		return jsonString(v)
	}
	t := strings.TrimSpace(v)
	has := func(name string) bool {
		for _, x := range types {
			if x == name {
				return true
			}
		}
		return false
	}
	if strings.EqualFold(t, "null") && (has("null") || !has("string")) {
		return "null"
	}
	for _, typ := range types {
		switch typ {
		case "integer":
			if n, err := strconv.ParseInt(t, 10, 64); err == nil {
				return strconv.FormatInt(n, 10)
			}
		case "number":
			if isJSONNumber(t) {
				return t
			}
			if f, err := strconv.ParseFloat(t, 64); err == nil {
				if b, err := json.Marshal(f); err == nil {
					return string(b)
				}
			}
		case "boolean":
			if l := strings.ToLower(t); l == "true" || l == "false" {
				return l
			}
		case "object", "array":
			open := byte('{')
			if typ == "array" {
				open = '['
			}
			if t != "" && t[0] == open {
				var b bytes.Buffer
				if json.Compact(&b, []byte(t)) == nil {
					return b.String()
				}
			}
		}
	}
	return jsonString(v)
}

func isJSONNumber(s string) bool {
	if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// jsonString encodes s without HTML escaping, so "<" and "&" in code
// arguments stay readable to clients that print the raw JSON.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return strings.TrimSuffix(b.String(), "\n")
}
