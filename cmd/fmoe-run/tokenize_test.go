package main

import (
	"os"
	"slices"
	"testing"
)

func TestParseIDs(t *testing.T) {
	ids, err := parseIDs("[1, 2,3]\n4 5", 10)
	if err != nil || !slices.Equal(ids, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("%v %v", ids, err)
	}
	for _, bad := range []string{"1,x", "10", "-1"} {
		if _, err := parseIDs(bad, 10); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadTools(t *testing.T) {
	tools, err := readTools("../../models/fmoe-tiny-chat/tools.json")
	if err != nil || len(tools) != 2 || tools[0].Function.Name != "get_weather" {
		t.Fatalf("%v %v", tools, err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"bad.json": "{", "noname.json": `[{"type":"function","function":{}}]`} {
		p := dir + "/" + name
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := readTools(p); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
