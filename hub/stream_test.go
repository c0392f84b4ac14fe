package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestOpenStream: the headers come by Range (a few hundred bytes per shard, not the shards),
// a shard whose header length cannot be right is named, and offline or --dir is refused.
func TestOpenStream(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-chat", tinyChat)
	bad := fixtureRepo(t, "fmoe/bad", tinyChat)
	const shard = "model-00002-of-00003.safetensors"
	data := append([]byte(nil), bad.Files[shard].Data...)
	binary.LittleEndian.PutUint64(data, uint64(len(data)))
	bad.Files[shard].Data = data
	srv := startHub(t, repo, bad)
	c := newTestClient(srv, t.TempDir(), "")
	s, err := c.OpenStream(context.Background(), Ref{Repo: repo.ID, Revision: "main"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range s.Shards() {
		n := binary.LittleEndian.Uint64(sh.Header)
		want := repo.Files[sh.Name].Data[:8+n]
		if sh.Kept || sh.Size != int64(len(repo.Files[sh.Name].Data)) || string(sh.Header) != string(want) {
			t.Errorf("%s: kept %v, size %d, header of %d bytes differs from the file's", sh.Name, sh.Kept, sh.Size, len(sh.Header))
		}
		// The server counts a write after the client may have read it: at most, not exactly.
		if got := srv.Stats.BodyBytes(sh.Name); got > int64(len(want)) {
			t.Errorf("%s: %d bytes served for a %d-byte header", sh.Name, got, len(want))
		}
	}
	_, err = c.OpenStream(context.Background(), Ref{Repo: bad.ID, Revision: "main"}, Options{})
	if err == nil || !strings.Contains(err.Error(), shard) || !strings.Contains(err.Error(), "corrupt safetensors header") {
		t.Errorf("bad header length: %v", err)
	}
	if _, err := c.OpenStream(context.Background(), Ref{Repo: repo.ID, Revision: "main"}, Options{Dir: t.TempDir()}); err == nil {
		t.Error("--dir accepted")
	}
	c.s.Offline = true
	if _, err := c.OpenStream(context.Background(), Ref{Repo: repo.ID, Revision: "main"}, Options{}); !errors.Is(err, ErrNotCached) {
		t.Errorf("offline: %v", err)
	}
}

// TestStreamRun: shards are handed over in name order, verified and whole; at most Lookahead
// are on disk or on their way beyond those already handed over; released shards are deleted;
// when the consumer fails, every shard the stream fetched and still held is deleted.
func TestStreamRun(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-hf", tinyHF)
	srv := startHub(t, repo)
	cache := t.TempDir()
	c := newTestClient(srv, cache, "")
	const workers = 3
	s, err := c.OpenStream(context.Background(), Ref{Repo: repo.ID, Revision: "main"}, Options{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(cache, RepoFolderName(repo.ID), "blobs")
	onDisk := func() (n int) {
		ents, _ := os.ReadDir(blobs)
		for _, e := range ents {
			if len(e.Name()) == 64 || strings.HasSuffix(e.Name(), ".incomplete") { // sha256 blobs: the shards
				n++
			}
		}
		return n
	}
	var order []string
	err = s.Run(context.Background(), func(name, path string) error {
		order = append(order, name)
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, repo.Files[name].Data) {
			t.Errorf("%s handed over incomplete or wrong (%v)", name, err)
		}
		// This one, and at most workers-1 more fetched or on their way.
		if n := onDisk(); n > workers {
			t.Errorf("at %s: %d shards on disk, lookahead %d", name, n, workers)
		}
		return s.Release(name)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 34 || !sort.StringsAreSorted(order) {
		t.Errorf("handed over %d shards, in order %v", len(order), order)
	}
	if n := onDisk(); n != 0 {
		t.Errorf("%d shards left after all were released", n)
	}

	// The consumer fails at the fifth shard, holding the fourth.
	s, err = c.OpenStream(context.Background(), Ref{Repo: repo.ID, Revision: "main"}, Options{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("the pack failed")
	i := 0
	err = s.Run(context.Background(), func(name, path string) error {
		if i++; i == 5 {
			return stop
		}
		if i == 4 {
			return nil // held
		}
		return s.Release(name)
	})
	if !errors.Is(err, stop) {
		t.Fatalf("consumer failure: %v", err)
	}
	if n := onDisk(); n != 0 {
		t.Errorf("%d shards or partial files left after a failed stream", n)
	}
	if _, err := os.Stat(filepath.Join(cache, RepoFolderName(repo.ID), "refs", "main")); err == nil {
		t.Error("a stream wrote refs/main")
	}
}
