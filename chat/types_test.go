package chat

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestMessageUnmarshal(t *testing.T) {
	cases := []struct {
		in   string
		want Message
	}{
		{`{"role":"user","content":"hi"}`, Message{Role: "user", Content: "hi"}},
		{`{"role":"user","content":[{"type":"text","text":"a "},{"type":"text","text":"b"}]}`, Message{Role: "user", Content: "a b"}},
		{`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}}]}`,
			Message{Role: "assistant", ToolCalls: []ToolCall{{ID: "c1", Type: "function", Function: FunctionCall{Name: "f", Arguments: `{"x": 1}`}}}}},
		{`{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":{"x": [1, 2.0], "y": "é"}}}]}`,
			Message{Role: "assistant", ToolCalls: []ToolCall{{Type: "function", Function: FunctionCall{Name: "f", Arguments: `{"x":[1,2.0],"y":"é"}`}}}}},
		{`{"role":"assistant","content":"ok","reasoning_content":"why"}`, Message{Role: "assistant", Content: "ok", ReasoningContent: "why"}},
		{`{"role":"assistant","content":"ok","reasoning":"alias"}`, Message{Role: "assistant", Content: "ok", ReasoningContent: "alias"}},
		{`{"role":"tool","content":"42","tool_call_id":"c1","name":"f"}`, Message{Role: "tool", Content: "42", ToolCallID: "c1", Name: "f"}},
	}
	for _, c := range cases {
		var m Message
		if err := json.Unmarshal([]byte(c.in), &m); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(m, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.in, m, c.want)
		}
	}
}

func TestMessageUnmarshalErrors(t *testing.T) {
	for in, wantErr := range map[string]string{
		`{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}`:         `content[0]: part type "image_url" is not supported`,
		`{"role":"user","content":[{"type":"text"}]}`:                                      `content[0]: text part has no "text" field`,
		`{"role":"user","content":42}`:                                                     "expected a string, null or an array of parts, got 42",
		`{"role":"user","content":[1]}`:                                                    "expected a string or an array of {type, text} parts",
		`{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"x":}}}]}`: "invalid character",
	} {
		var m Message
		err := json.Unmarshal([]byte(in), &m)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want it to contain %q", in, err, wantErr)
		}
	}
}

func TestMessageMarshal(t *testing.T) {
	m := Message{Role: "assistant", ReasoningContent: "r", ToolCalls: []ToolCall{
		{ID: "c1", Type: "function", Function: FunctionCall{Name: "f", Arguments: `{"a":1}`}}}}
	got, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"role":"assistant","reasoning_content":"r","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}],"content":null}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	got, _ = json.Marshal(Message{Role: "tool", Content: "x", ToolCallID: "c1"})
	if string(got) != `{"role":"tool","tool_call_id":"c1","content":"x"}` {
		t.Fatalf("tool message: %s", got)
	}
	var back Message
	if err := json.Unmarshal([]byte(want), &back); err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestToolJSON(t *testing.T) {
	in := `{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"z":{},"a":{}}}}}`
	var tool Tool
	if err := json.Unmarshal([]byte(in), &tool); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(tool)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Fatalf("tool did not round-trip (parameter key order matters for rendering):\n got %s\nwant %s", out, in)
	}
}
