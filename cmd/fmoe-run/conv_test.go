package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

var packRoot string

// TestMain removes what tinyPack made.
func TestMain(m *testing.M) {
	code := m.Run()
	if packRoot != "" {
		os.RemoveAll(packRoot)
	}
	os.Exit(code)
}

// tinyPack packs the built-in model once, for the tests that run it.
var tinyPack = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fmoe-run-test")
	if err != nil {
		return "", err
	}
	packRoot = dir
	dir = filepath.Join(dir, "fmoe-tiny-chat")
	_, err = pack.Convert(context.Background(), pack.Options{In: "../../models/fmoe-tiny-chat/mlx-4bit", Out: dir})
	return dir, err
})

// runApp runs fmoe-run in-process with stdin and returns its stdout.
func runApp(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	dir, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$MODEL", dir)
	}
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = inR, outW
	defer func() { os.Stdin, os.Stdout = oldIn, oldOut }()
	go func() { io.WriteString(inW, stdin); inW.Close() }()
	got := make(chan string)
	go func() { b, _ := io.ReadAll(outR); got <- string(b) }()
	app := &cli.App{Name: "fmoe-run", Commands: commands(), Writer: io.Discard, ErrWriter: io.Discard}
	cliutil.Prepare(app) // usage errors as the command has them; errors come back instead of exiting
	err = app.Run(append([]string{"fmoe-run"}, args...))
	outW.Close()
	return <-got, err
}

func TestEvalCommand(t *testing.T) {
	out, err := runApp(t, "", "eval", "--model", "$MODEL", "--eval", "../../models/fmoe-tiny-chat/eval/eval.json", "--cases", "4,7,26", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if raw["n"] != 3.0 || raw["matches_mlx4_ids"] != 3.0 || raw["exact"] != 2.0 {
		t.Errorf("report %v", raw)
	}
	if _, err := runApp(t, "", "eval", "--model", "$MODEL", "--eval", "../../models/fmoe-tiny-chat/eval/eval.json", "--cases", "60"); err == nil {
		t.Error("--cases 60 accepted")
	}
}

func TestChatCommand(t *testing.T) {
	tools := filepath.Join(t.TempDir(), "tools.json")
	os.WriteFile(tools, []byte(`[{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
		"parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}]`), 0o644)
	out, err := runApp(t, "What's the weather in Paris?\n{\"temp\": 18, \"condition\": \"sunny\"}\n/stats\n/exit\n",
		"chat", "--model", "$MODEL", "--tools", tools, "--hide-reasoning")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`get_weather({"city":"Paris"})`, "It is 18 degrees and sunny in Paris.", "session:"} {
		if !strings.Contains(out, want) {
			t.Errorf("transcript lacks %q:\n%s", want, out)
		}
	}
	if _, err := runApp(t, "", "chat", "--model", "$MODEL", "--tools", "/nonexistent.json"); err == nil {
		t.Error("a missing tools file was accepted")
	}
}

func TestServeFlags(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1"} {
		if _, err := runApp(t, "", "serve", "--model", "$MODEL", "--addr", addr); err == nil {
			t.Errorf("--addr %q accepted", addr)
		}
	}
	for host, want := range map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true, "0.0.0.0": false, "": false, "192.168.1.2": false} {
		if isLoopback(host) != want {
			t.Errorf("isLoopback(%q) = %v", host, !want)
		}
	}
}
