package hub

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// IndexFile and SingleFile are the two ways a safetensors checkpoint names its weights.
const (
	IndexFile  = "model.safetensors.index.json"
	SingleFile = "model.safetensors"
)

// PackSideFiles are the files besides the weights that fmoe-pack convert reads or copies into
// a pack (config.json is required; the others are fetched when the repository has them).
var PackSideFiles = []string{"config.json", "generation_config.json", "tokenizer.json", "tiktoken.model", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"}

// packMeta picks the small files a pack needs from the repository's list: the side files and
// the index (or the single weights file).
func packMeta(ref Ref, files []FileInfo) (meta []*FileInfo, index, single *FileInfo, err error) {
	byName := map[string]*FileInfo{}
	for i := range files {
		byName[files[i].Path] = &files[i]
	}
	if byName["config.json"] == nil {
		return nil, nil, nil, fmt.Errorf("%s has no config.json: not a model checkpoint fmoe-pack can read", ref)
	}
	for _, n := range PackSideFiles {
		if f := byName[n]; f != nil {
			meta = append(meta, f)
		}
	}
	index, single = byName[IndexFile], byName[SingleFile]
	switch {
	case index != nil:
		meta = append(meta, index)
		single = nil
	case single == nil:
		return nil, nil, nil, fmt.Errorf("%s has neither %s nor %s: no safetensors weights to pack", ref, IndexFile, SingleFile)
	}
	return meta, index, single, nil
}

// ShardNames reads an index file and returns the shard files its weight_map names, sorted.
func ShardNames(indexPath string) ([]string, error) {
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: no weight_map", indexPath)
	}
	seen := map[string]bool{}
	var names []string
	for tensor, shard := range idx.WeightMap {
		if shard == "" || shard != cleanRel(shard) {
			return nil, fmt.Errorf("%s: tensor %s is in %q, which is not a file inside the repository", indexPath, tensor, shard)
		}
		if !seen[shard] {
			seen[shard] = true
			names = append(names, shard)
		}
	}
	sort.Strings(names)
	return names, nil
}

// shardFiles maps the index's shard names to the repository's files; a shard the repository
// lacks is named.
func shardFiles(ref Ref, indexPath string, files []FileInfo) ([]*FileInfo, error) {
	names, err := ShardNames(indexPath)
	if err != nil {
		return nil, err
	}
	byName := map[string]*FileInfo{}
	for i := range files {
		byName[files[i].Path] = &files[i]
	}
	out := make([]*FileInfo, 0, len(names))
	for _, n := range names {
		f := byName[n]
		if f == nil {
			return nil, fmt.Errorf("%w: %s names shard %s, which %s does not have", ErrEntryNotFound, IndexFile, n, ref)
		}
		out = append(out, f)
	}
	return out, nil
}
