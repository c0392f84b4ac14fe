package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/hub"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

// hubSource hands a hub.Stream to the packer.
type hubSource struct{ *hub.Stream }

func (h hubSource) Shards() []pack.SourceShard {
	var out []pack.SourceShard
	for _, s := range h.Stream.Shards() {
		out = append(out, pack.SourceShard{Name: s.Name, Size: s.Size, Header: s.Header, Kept: s.Kept})
	}
	return out
}

// convertStream is convert --stream: download and pack at once, deleting each shard once it
// is packed. Offline there is nothing to download: the cached snapshot is packed as usual.
func convertStream(ctx context.Context, c *cli.Context, o pack.Options) (*pack.Stats, error) {
	ref, err := hub.ParseRef(c.String("in"))
	if err != nil {
		return nil, cliutil.UsageError("--in %v", err)
	}
	s, err := hub.SettingsFromEnv()
	if err != nil {
		return nil, err
	}
	log := c.App.ErrWriter
	if s.Offline {
		fmt.Fprintln(log, "HF_HUB_OFFLINE is set: nothing to stream; packing the cached snapshot")
		if o.In, err = convertInput(ctx, c); err != nil {
			return nil, err
		}
		return pack.Convert(ctx, o)
	}
	st, err := hub.NewClient(s).OpenStream(ctx, ref, hub.Options{Workers: c.Int("downloads"), Progress: o.Progress, Log: log})
	if err != nil {
		return nil, err
	}
	o.Progress = nil // the download's bar: packing keeps pace with it
	return pack.ConvertStream(ctx, o, hubSource{st}, pack.StreamOptions{Check: func(p *pack.StreamPlan) error {
		return checkStreamSpace(log, p, st.CacheDir(), o.Out, hub.FreeBytes, hub.SameFileSystem)
	}})
}

// checkStreamSpace says what a streaming pack needs and stops it before the download when the
// disk (or either disk, when the cache and the output are on two) has less free.
func checkStreamSpace(log io.Writer, p *pack.StreamPlan, cache, out string, free func(string) int64, same func(a, b string) bool) error {
	outDir := filepath.Dir(filepath.Clean(out))
	fmt.Fprintf(log, "streaming needs %s free: the pack (at most %s) in %s, and at most %d of the %d shards (%s, of %s to download) at once in %s\n",
		gbs(p.NeedBytes()), gbs(p.PackBytes+p.SpoolBytes), outDir, p.WindowShards, p.Shards, gbs(p.WindowBytes), gbs(p.DownloadBytes), cache)
	type need struct {
		dir   string
		bytes int64
	}
	needs := []need{{outDir, p.PackBytes + p.SpoolBytes}, {cache, p.WindowBytes}}
	if same(cache, outDir) {
		needs = []need{{outDir, p.NeedBytes()}}
	}
	for _, n := range needs {
		have := free(n.dir)
		if have >= 0 && have < n.bytes {
			return fmt.Errorf("streaming needs %s free in %s, it has %s", gbs(n.bytes), n.dir, gbs(have))
		}
		if have >= 0 {
			fmt.Fprintf(log, "%s has %s free\n", n.dir, gbs(have))
		}
	}
	return nil
}

func gbs(n int64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }
