// Command shardwindow measures how much source-shard disk a pack that streams a download
// would need (hub.ShardWindow) for checkpoint folders. Each DIR holds a
// model.safetensors.index.json (or the same file gzipped, .json.gz) and the shard sizes: either
// a shards.tsv listing them (name, size in bytes, sha256, tab-separated: the fixtures under
// testdata/hub-index are in this form), or the shards themselves, or the Git LFS pointer files
// of a clone made with GIT_LFS_SKIP_SMUDGE=1 (their "size" line is the shard's size).
//
//	go run ./scripts/shardwindow DIR...
//	go run ./scripts/shardwindow testdata/hub-index/*   # the table in docs/hub.md
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fmoe/fmoe/hub"
)

// sizesFile lists shard sizes in a folder that does not hold the shards (the fixtures).
const sizesFile = "shards.tsv"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/shardwindow DIR...")
		os.Exit(2)
	}
	fmt.Println("| checkpoint | shards | download | per block | per layer | convert today | interleaved |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, dir := range os.Args[1:] {
		cells, err := measure(dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "shardwindow: %s: %v\n", dir, err)
			os.Exit(1)
		}
		fmt.Println("| " + filepath.Base(dir) + " | " + strings.Join(cells, " | ") + " |")
	}
}

// measure gives the table cells after the checkpoint's name: shards, download, and the
// window under each order.
func measure(dir string) ([]string, error) {
	weightMap, sizes, err := load(dir)
	if err != nil {
		return nil, err
	}
	var cells []string
	for o := hub.OrderBlock; o <= hub.OrderInterleaved; o++ {
		w, err := hub.ShardWindow(weightMap, sizes, o)
		if err != nil {
			return nil, err
		}
		if o == hub.OrderBlock {
			cells = append(cells, fmt.Sprint(w.Shards), gb(w.TotalBytes))
		}
		cells = append(cells, fmt.Sprintf("%s (%d shards, %.0f%%)", gb(w.PeakBytes), w.PeakShards, 100*float64(w.PeakBytes)/float64(w.TotalBytes)))
	}
	return cells, nil
}

// load reads a folder's weight map and the size of every shard it names.
func load(dir string) (map[string]string, map[string]int64, error) {
	weightMap, err := readIndex(dir)
	if err != nil {
		return nil, nil, err
	}
	sizes, err := readSizesFile(filepath.Join(dir, sizesFile))
	if os.IsNotExist(err) {
		sizes, err = map[string]int64{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, shard := range weightMap {
		if _, ok := sizes[shard]; ok {
			continue
		}
		n, err := shardSize(filepath.Join(dir, shard))
		if err != nil {
			return nil, nil, err
		}
		sizes[shard] = n
	}
	return weightMap, sizes, nil
}

// readIndex reads the weight map of model.safetensors.index.json, or of its gzipped copy.
func readIndex(dir string) (map[string]string, error) {
	p := filepath.Join(dir, hub.IndexFile)
	var r io.Reader
	fh, err := os.Open(p)
	if os.IsNotExist(err) {
		p += ".gz"
		if fh, err = os.Open(p); err == nil {
			defer fh.Close()
			if r, err = gzip.NewReader(fh); err != nil {
				return nil, fmt.Errorf("%s: %v", p, err)
			}
		}
	} else if err == nil {
		defer fh.Close()
		r = fh
	}
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.NewDecoder(r).Decode(&idx); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: no weight_map", p)
	}
	return idx.WeightMap, nil
}

// readSizesFile reads shards.tsv: name, size in bytes and sha256, tab-separated.
func readSizesFile(p string) (map[string]int64, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sizes := map[string]int64{}
	sc := bufio.NewScanner(fh)
	for line := 1; sc.Scan(); line++ {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: want name<TAB>size<TAB>sha256, got %q", p, line, sc.Text())
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s:%d: size of %s is %q, want a positive number of bytes", p, line, f[0], f[1])
		}
		sizes[f[0]] = n
	}
	return sizes, sc.Err()
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
