package server

import (
	"net/http"
	"testing"
)

// FuzzPrepare: whatever a client sends as a chat completion's body,
// prepare answers with a job or a client error (400, or 404 for another
// model) that says what is wrong: never a panic, never a server error.
func FuzzPrepare(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"fmoe-tiny-chat","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":8,"temperature":0,"top_p":0.5,"seed":3,"stop":["\n","."]}`,
		`{"messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"tool_choice":"required"}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"bash","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"bash"}}}`,
		`{"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"function","function":{"name":"nope"}}}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"parts"}]}],"chat_template_kwargs":{"enable_thinking":false},"max_completion_tokens":4}`,
		`{"messages":[{"role":"user","content":"run ls"},{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"bash","arguments":"{\"command\":\"ls\"}"}}]},{"role":"tool","tool_call_id":"a","content":"ok"}]}`,
		`{"model":"other","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[],"stop":"x","stream":true}`,
		`not json`, `{}`, `[]`, `null`, `{"messages":null}`,
	} {
		f.Add([]byte(seed))
	}
	s := New(engine, Options{Name: "fmoe-tiny-chat"})
	f.Fuzz(func(t *testing.T, body []byte) {
		j, status, err := s.prepare(body)
		switch {
		case err == nil && (j == nil || status != 0):
			t.Fatalf("no error, yet job %v and status %d", j != nil, status)
		case err != nil && status != http.StatusBadRequest && status != http.StatusNotFound:
			t.Fatalf("status %d (want 400 or 404) for: %v", status, err)
		case err != nil && err.Error() == "":
			t.Fatal("an error without a message")
		}
	})
}
