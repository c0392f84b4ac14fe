// Command shardwindow measures how much source-shard disk a pack that streams a download
// would need (hub.ShardWindow) for checkpoint folders: each DIR holds a
// model.safetensors.index.json and its shards, either the real files or the Git LFS pointer
// files of a clone made with GIT_LFS_SKIP_SMUDGE=1 (their "size" line is the shard's size).
//
//	go run ./scripts/shardwindow DIR...
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fmoe/fmoe/hub"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/shardwindow DIR...")
		os.Exit(2)
	}
	fmt.Println("| checkpoint | shards | download | per block | per layer | convert today | interleaved |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, dir := range os.Args[1:] {
		if err := measure(dir); err != nil {
			fmt.Fprintf(os.Stderr, "shardwindow: %s: %v\n", dir, err)
			os.Exit(1)
		}
	}
}

func measure(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, hub.IndexFile))
	if err != nil {
		return err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return err
	}
	sizes := map[string]int64{}
	for _, shard := range idx.WeightMap {
		if _, ok := sizes[shard]; ok {
			continue
		}
		n, err := shardSize(filepath.Join(dir, shard))
		if err != nil {
			return err
		}
		sizes[shard] = n
	}
	row := []string{filepath.Base(dir)}
	for o := hub.OrderBlock; o <= hub.OrderInterleaved; o++ {
		w, err := hub.ShardWindow(idx.WeightMap, sizes, o)
		if err != nil {
			return err
		}
		if o == hub.OrderBlock {
			row = append(row, fmt.Sprint(w.Shards), gb(w.TotalBytes))
		}
		row = append(row, fmt.Sprintf("%s (%d shards, %.0f%%)", gb(w.PeakBytes), w.PeakShards, 100*float64(w.PeakBytes)/float64(w.TotalBytes)))
	}
	fmt.Println("| " + strings.Join(row, " | ") + " |")
	return nil
}

// shardSize is the size an LFS pointer file records, or the file's own size.
func shardSize(p string) (int64, error) {
	fh, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	if sc.Scan() && strings.HasPrefix(sc.Text(), "version https://git-lfs.github.com/spec/") {
		for sc.Scan() {
			var n int64
			if _, err := fmt.Sscanf(sc.Text(), "size %d", &n); err == nil {
				return n, nil
			}
		}
		return 0, fmt.Errorf("%s: LFS pointer without a size line", p)
	}
	st, err := fh.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func gb(n int64) string { return fmt.Sprintf("%.1f GB", float64(n)/1e9) }
