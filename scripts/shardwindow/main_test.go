package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/hub"
)

// window is one order's peak: bytes and shards on disk.
type window struct {
	bytes  int64
	shards int
}

// TestRealCheckpointWindows runs hub.ShardWindow on the index files and shard sizes of real
// Hub checkpoints (testdata/hub-index, see its README) and checks the figures exactly, then
// checks that docs/hub.md's table states the same rounded figures, so the table is what
// `go test` measures.
func TestRealCheckpointWindows(t *testing.T) {
	for _, tc := range []struct {
		name   string
		total  int64
		shards int
		want   [4]window // per block, per layer, convert today, interleaved
	}{
		// Layer-ordered shards: two shards whatever the order, as long as dense tensors are
		// written with their layer.
		{"mixtral-8x7b-instruct-v0.1", 93405713504, 19,
			[4]window{{9966008144, 2}, {9966008144, 2}, {93405713504, 19}, {9966008144, 2}}},
		{"wizardlm-2-8x22b", 281241493344, 59,
			[4]window{{9805462816, 2}, {9991085696, 2}, {281241493344, 59}, {9991085696, 2}}},
		// Name-ordered shards (layers 0, 1, 10-19 first): the interleaved order needs it all.
		{"qwen3.5-25b-reap-a3b-coding", 50185806328, 10,
			[4]window{{10734889872, 2}, {12609262976, 3}, {50185806328, 10}, {50185806328, 10}}},
	} {
		weightMap, sizes, err := load(filepath.Join("../../testdata/hub-index", tc.name))
		if err != nil {
			t.Fatal(err)
		}
		for o, want := range tc.want {
			w, err := hub.ShardWindow(weightMap, sizes, hub.Order(o))
			if err != nil {
				t.Fatalf("%s, %v: %v", tc.name, hub.Order(o), err)
			}
			if w.TotalBytes != tc.total || w.Shards != tc.shards {
				t.Errorf("%s: download %d bytes in %d shards, want %d in %d", tc.name, w.TotalBytes, w.Shards, tc.total, tc.shards)
			}
			if got := (window{w.PeakBytes, w.PeakShards}); got != want {
				t.Errorf("%s, %v: peak %d bytes in %d shards, want %d in %d", tc.name, hub.Order(o), got.bytes, got.shards, want.bytes, want.shards)
			}
		}
		checkDocRow(t, tc.name)
	}
}

// checkDocRow finds the row of docs/hub.md's table that names the fixture and compares its
// cells after the first with what measure prints.
func checkDocRow(t *testing.T, name string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/hub.md")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := measure(filepath.Join("../../testdata/hub-index", name))
	if err != nil {
		t.Fatal(err)
	}
	want := " | " + strings.Join(cells, " | ") + " |"
	key := "testdata/hub-index/" + name
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| ") && strings.Contains(line, key) {
			if !strings.HasSuffix(line, want) {
				t.Errorf("docs/hub.md row for %s:\n%s\nwant it to end\n%s", key, line, want)
			}
			return
		}
	}
	t.Errorf("docs/hub.md has no table row naming %s; want one ending\n%s", key, want)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := load(dir); err == nil || !strings.Contains(err.Error(), hub.IndexFile) {
		t.Errorf("no index: %v, want an error naming %s", err, hub.IndexFile)
	}
	write(hub.IndexFile, `{"weight_map": {"a.weight": "s1.safetensors", "b.weight": "s2.safetensors"}}`)
	write(sizesFile, "s1.safetensors\t10\tabc\n")
	if _, _, err := load(dir); err == nil || !strings.Contains(err.Error(), "s2.safetensors") {
		t.Errorf("shard without a size: %v, want an error naming s2.safetensors", err)
	}
	write(sizesFile, "s1.safetensors\t10\tabc\ns2.safetensors\tten\tdef\n")
	if _, _, err := load(dir); err == nil || !strings.Contains(err.Error(), sizesFile+":2") {
		t.Errorf("bad size: %v, want an error naming %s:2", err, sizesFile)
	}
	write(sizesFile, "s1.safetensors\t10\tabc\n")
	write("s2.safetensors", "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 30\n")
	_, sizes, err := load(dir)
	if err != nil || sizes["s1.safetensors"] != 10 || sizes["s2.safetensors"] != 30 {
		t.Errorf("sizes from shards.tsv and an LFS pointer: %v, %v; want 10 and 30", sizes, err)
	}
}
