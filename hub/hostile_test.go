package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPullHostileListing: a listing (from a hostile or broken endpoint)
// whose file ids or paths would name places outside the cache or the
// --dir is refused before anything is written, the error naming the file,
// and nothing appears beside the cache or the directory.
func TestPullHostileListing(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	good := map[string]any{"rfilename": "model.safetensors", "size": 8, "blobId": strings.Repeat("a", 40)}
	for _, tc := range []struct {
		name string
		file map[string]any
		says string
	}{
		{"blob id climbs", map[string]any{"rfilename": "config.json", "size": 2, "blobId": "../../../../../evil"}, `config.json's git blob id "../../../../../evil"`},
		{"sha256 climbs", map[string]any{"rfilename": "config.json", "size": 2, "blobId": strings.Repeat("b", 40),
			"lfs": map[string]any{"sha256": "../../evil" + strings.Repeat("0", 54), "size": 2}}, "config.json's sha256"},
		{"blob id short", map[string]any{"rfilename": "config.json", "size": 2, "blobId": "abc"}, "40 lowercase hex digits"},
		{"blob id upper case", map[string]any{"rfilename": "config.json", "size": 2, "blobId": strings.Repeat("A", 40)}, "40 lowercase hex digits"},
		{"path climbs", map[string]any{"rfilename": "../config.json", "size": 2, "blobId": strings.Repeat("c", 40)}, `"../config.json" outside the repository`},
		{"path absolute", map[string]any{"rfilename": "/etc/config.json", "size": 2, "blobId": strings.Repeat("d", 40)}, "outside the repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listing := map[string]any{"sha": commit, "siblings": []any{tc.file, good}}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasPrefix(r.URL.Path, "/api/models/") {
					t.Errorf("the pull asked for %s after a hostile listing", r.URL.Path)
					http.NotFound(w, r)
					return
				}
				json.NewEncoder(w).Encode(listing)
			}))
			defer srv.Close()
			root := t.TempDir()
			cache, dir := filepath.Join(root, "cache"), filepath.Join(root, "dir")
			c := NewClient(Settings{Endpoint: srv.URL, CacheDir: cache})
			c.stall = 5 * time.Second
			ref, err := ParseRef("hf://fmoe/hostile")
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []Options{{}, {Dir: dir}} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := c.Pull(ctx, ref, o)
				cancel()
				if err == nil || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("--dir %q: %v, want an error saying %q", o.Dir, err, tc.says)
				}
			}
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if n := e.Name(); n != "cache" && n != "dir" {
					t.Errorf("written beside the cache: %s", n)
				}
			}
		})
	}
}
