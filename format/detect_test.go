package format

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ReadManifest on a directory without a manifest says what the directory is: a checkpoint
// (with the exact convert command), a file, missing, or neither.
func TestReadManifestExplainsUnpackedDirs(t *testing.T) {
	root := t.TempDir()
	write := func(rel string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hf/config.json")
	write("hf/model.safetensors")
	write("sharded/config.json")
	write("sharded/model.safetensors.index.json")
	write("my model/config.json")
	write("my model/model-00001-of-00002.safetensors")
	write("configonly/config.json")
	write("empty/.keep")
	write("afile")
	for _, c := range []struct {
		dir  string
		want []string
	}{
		{"hf", []string{"Hugging Face / MLX checkpoint", "fmoe-pack convert --in " + root + "/hf --out " + root + "/hf-fmoe"}},
		{"hf/", []string{"fmoe-pack convert --in " + root + "/hf/ --out " + root + "/hf-fmoe"}},
		{"sharded", []string{"fmoe-pack convert --in " + root + "/sharded --out " + root + "/sharded-fmoe"}},
		{"my model", []string{"fmoe-pack convert --in '" + root + "/my model' --out '" + root + "/my model-fmoe'"}},
		{"configonly", []string{"not a packed model (no manifest, model_weights.json) nor a checkpoint"}},
		{"empty", []string{"not a packed model (no manifest, model_weights.json) nor a checkpoint"}},
		{"afile", []string{"is a file"}},
		{"missing", []string{"missing: no such directory"}},
	} {
		_, err := ReadManifest(filepath.Join(root, c.dir) + map[bool]string{true: "/"}[strings.HasSuffix(c.dir, "/")])
		if err == nil || !errors.Is(err, ErrNotPacked) || c.dir != "afile" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want ErrNotPacked wrapping ErrNotExist", c.dir, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.dir, err, w)
			}
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"/a/b-c_d.e": "/a/b-c_d.e", "a b": "'a b'", "it's": `'it'\''s'`, "~x": "'~x'", "$HOME": "'$HOME'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}
