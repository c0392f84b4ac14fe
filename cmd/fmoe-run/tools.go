package main

import (
	"encoding/json"
	"os"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/internal/cliutil"
)

// readTools reads an OpenAI-format tools file (a list of {"type":"function","function":{...}}),
// the --tools of every command that offers tools to the model.
func readTools(path string) ([]chat.Tool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, cliutil.UsageError("--tools: %v", err)
	}
	var tools []chat.Tool
	if err := json.Unmarshal(b, &tools); err != nil {
		return nil, cliutil.UsageError("--tools %s: want a JSON list of OpenAI tools: %v", path, err)
	}
	for i, t := range tools {
		if t.Function.Name == "" {
			return nil, cliutil.UsageError("--tools %s: tool %d has no function name", path, i)
		}
	}
	return tools, nil
}
