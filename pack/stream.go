package pack

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fmoe/fmoe/internal/mmap"
)

// A streaming pack (docs/hub.md, "Streaming") converts a checkpoint while its shards download
// and lets each shard go as soon as nothing still needs it. It knows every tensor before any
// shard arrives, from the shards' safetensors headers: each shard not yet here is a zero
// mapping laid out from its header (a stand-in), so the checkpoint opens, and is checked,
// exactly as Convert opens a folder. When a shard arrives its tensors are pointed at the real
// file, and every unit of output whose shards are all here is written: a layer (its dense
// tensors and its experts' file), or one tensor outside the layers. model_weights.bin still
// comes out in schema order (densewriter.go), so the pack equals Convert's byte for byte.

// ShardSource delivers a checkpoint's shards while they download (hub.Stream is one).
type ShardSource interface {
	// Dir holds config.json, the index and the side files; the shards arrive later.
	Dir() string
	// Shards lists every shard the index names, in the order Run delivers them.
	Shards() []SourceShard
	// Lookahead is how many shards may be downloading while one is being packed, plus one.
	Lookahead() int
	// Run delivers every shard in order, calling arrived with the path of the verified file,
	// and returns when all are delivered or something failed (arrived's error included).
	Run(ctx context.Context, arrived func(name, path string) error) error
	// Release says the pack no longer needs a delivered shard: the source may delete it.
	Release(name string) error
}

// SourceShard is a shard known before it is downloaded.
type SourceShard struct {
	Name   string
	Size   int64
	Header []byte // the safetensors header: the 8-byte length and the JSON
	// Kept: the shard was already on disk (a cache the user had) and stays; it costs no
	// new space.
	Kept bool
}

// StreamPlan is what a streaming pack will need on disk, known before the download.
type StreamPlan struct {
	PackBytes     int64 // the finished pack, at most (model_weights.bin, experts, side files, manifest)
	SpoolBytes    int64 // model_weights.bin's largest tensor, copied out of its spool file
	WindowBytes   int64 // new shards on disk at once at most, those being packed and those downloading
	WindowShards  int   // how many shards that is
	HeldBytes     int64 // of WindowBytes: shards delivered and still needed, at the worst moment
	DownloadBytes int64 // every shard to download
	Shards        int
}

// NeedBytes is the most new disk space the streaming pack uses at once.
func (s *StreamPlan) NeedBytes() int64 { return s.PackBytes + s.SpoolBytes + s.WindowBytes }

// StreamOptions control ConvertStream.
type StreamOptions struct {
	// Check is given the plan before any shard is downloaded; an error stops the pack (the
	// command compares the plan with the free space).
	Check func(*StreamPlan) error
	// Observe, if set, is called after each shard is delivered and packed and each unit of
	// output is written (tests measure the disk there).
	Observe func()
}

// ConvertStream packs the checkpoint src delivers into o.Out (o.In is ignored). On any
// failure or interruption the staged output is removed; src cleans up its own downloads.
func ConvertStream(ctx context.Context, o Options, src ShardSource, so StreamOptions) (*Stats, error) {
	start := time.Now()
	o.In = src.Dir()
	p, err := newPacker(ctx, o, func(dir string) (*checkpoint, error) {
		return openCheckpointWith(dir, standIns(dir, src.Shards()))
	})
	if err != nil {
		return nil, err
	}
	defer p.ck.Close()
	units := p.streamUnits()
	plan, err := p.planStream(units, src.Shards(), src.Lookahead())
	if err != nil {
		return nil, err
	}
	if so.Check != nil {
		if err := so.Check(plan); err != nil {
			return nil, err
		}
	}
	if err := p.begin(); err != nil {
		return nil, err
	}
	defer p.out.abandonUnlessCommitted()
	st := &streamer{p: p, src: src, sched: newScheduler(units, src.Shards()), observe: so.Observe}
	if st.observe == nil {
		st.observe = func() {}
	}
	if st.x, err = p.planExperts(); err != nil {
		return nil, err
	}
	if st.d, err = p.newDenseWriter(len(p.schema())); err != nil {
		return nil, err
	}
	err = src.Run(ctx, st.arrived)
	if err == nil && !st.sched.finished() {
		err = fmt.Errorf("internal error: the download ended with %d units of output unwritten", st.sched.left)
	}
	if err != nil {
		st.d.abandon()
		p.closeUnsynced()
		return nil, err
	}
	if err := st.d.finish(); err != nil {
		return nil, err
	}
	if err := p.finishExperts(st.x); err != nil {
		return nil, err
	}
	return p.finish(start)
}

// standIns opens each shard of the index as a zero mapping laid out from its header.
func standIns(dir string, list []SourceShard) shardOpener {
	shards := map[string]SourceShard{}
	for _, s := range list {
		shards[s.Name] = s
	}
	return func(name, path string) (*mmap.File, bool, error) {
		s, ok := shards[name]
		if !ok {
			return nil, false, fmt.Errorf("%s: the index names shard %s, which the download does not bring", dir, name)
		}
		mf, err := mmap.Zero(path, s.Size, s.Header)
		return mf, true, err
	}
}

// streamer is a streaming pack under way: what is written, and what each arrival completes.
type streamer struct {
	p       *packer
	src     ShardSource
	sched   *scheduler
	x       *expertPlan
	d       *denseWriter
	observe func()
}

// arrived binds a delivered shard, writes every unit it completes, and releases every shard
// nothing needs any more.
func (s *streamer) arrived(name, path string) error {
	if err := s.p.ck.bind(name, path); err != nil {
		return err
	}
	ready, free := s.sched.arrive(name)
	for _, u := range ready {
		if err := s.p.packUnit(s.d, s.x, u); err != nil {
			return err
		}
		s.observe()
		free = append(free, s.sched.done(u)...)
	}
	for _, f := range free {
		s.p.ck.unbind(f)
		if err := s.src.Release(f); err != nil {
			return err
		}
	}
	s.observe()
	return nil
}

// packUnit writes one unit of output: its dense tensors, then its layer's experts.
func (p *packer) packUnit(d *denseWriter, x *expertPlan, u *streamUnit) error {
	schema := p.schema()
	for _, i := range u.dense {
		if err := p.packDenseTensor(d, i, schema[i]); err != nil {
			return err
		}
	}
	if u.layer >= 0 {
		return p.packExpertLayer(x, u.layer)
	}
	return nil
}

// checkArrived refuses to pack from a shard that has not arrived: its stand-in reads zeros.
// streamUnits gives every unit all the shards it reads, so this only fires on a bug there.
func (p *packer) checkArrived(srcs []*srcTensor) error {
	for _, s := range srcs {
		if s.shard != nil && s.shard.standIn {
			return fmt.Errorf("internal error: tensor %s was read before its shard %s arrived", s.orig, s.shard.name)
		}
	}
	return nil
}

// bind points the tensors of a stand-in shard at the arrived file. Its header must be the one
// the stand-in was laid out from.
func (c *checkpoint) bind(name, path string) error {
	i := slices.IndexFunc(c.shards, func(s *shard) bool { return s.name == name })
	if i < 0 {
		return nil // not a shard of the index (the source delivers only those)
	}
	sh := c.shards[i]
	if !sh.standIn {
		return fmt.Errorf("internal error: shard %s delivered twice", name)
	}
	mf, err := mmap.OpenPrivate(path)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	head := headerBytes(sh.file.Data)
	if len(mf.Data) != len(sh.file.Data) || !bytes.Equal(headerBytes(mf.Data), head) {
		mf.Close()
		return fmt.Errorf("shard %s: the downloaded file's size or safetensors header differs from what the Hub gave before the download", path)
	}
	mf.Sequential()
	_, _, views, _, err := shardViews(mf, path)
	if err != nil {
		mf.Close()
		return err
	}
	for _, t := range c.tensors {
		if t.shard == sh {
			t.data = views[t.orig]
		}
	}
	old := sh.file
	sh.file, sh.standIn = mf, false
	old.Close()
	// attachFP8 checked the scales of the stand-in's zeros; now the real ones.
	for _, t := range c.tensors {
		if t.scale != nil && t.scale.shard == sh {
			if err := c.checkFinite(t.scale, t.scale.data, "", 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// unbind unmaps a shard nothing needs any more, so its file can be deleted.
func (c *checkpoint) unbind(name string) {
	for _, sh := range c.shards {
		if sh.name == name && sh.file != nil {
			sh.file.Close()
			sh.file = nil
			for _, t := range c.tensors {
				if t.shard == sh {
					t.data = nil
				}
			}
		}
	}
}

// headerBytes is the safetensors header of a mapped shard (length prefix and JSON), or nil.
func headerBytes(data []byte) []byte {
	if len(data) < 8 {
		return nil
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > uint64(len(data)-8) {
		return nil
	}
	return data[:8+n]
}

// sideFileBytes is the size of the side files a pack copies from dir.
func sideFileBytes(dir string) int64 {
	var n int64
	for _, name := range sideFiles {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			n += st.Size()
		}
	}
	return n
}
