package hub

import (
	"context"
	"encoding/binary"
	"errors"
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
