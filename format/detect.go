package format

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotPacked is wrapped by the error ReadManifest returns for a directory without a
// manifest, with a message that says what the directory is and what to do.
var ErrNotPacked = errors.New("not a packed model")

// notPackedError says what a directory without a manifest is; it wraps ErrNotPacked and the
// error from reading the manifest (fs.ErrNotExist).
type notPackedError struct {
	msg   string
	cause error
}

func (e *notPackedError) Error() string   { return e.msg }
func (e *notPackedError) Unwrap() []error { return []error{ErrNotPacked, e.cause} }

// notPacked explains why dir, which has no manifest, cannot be opened: it is missing, a
// checkpoint that fmoe-pack convert turns into a packed model (the command is spelled out), or
// neither. cause is the error from reading the manifest.
func notPacked(dir string, cause error) error {
	e := &notPackedError{cause: cause}
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		e.msg = fmt.Sprintf("%s: no such directory", dir)
	case !st.IsDir():
		e.msg = fmt.Sprintf("%s is a file; a packed model is a directory holding %s", dir, ManifestName)
	case IsCheckpoint(dir):
		e.msg = fmt.Sprintf("%s is a Hugging Face / MLX checkpoint (config.json and *.safetensors), not a packed model; pack it first:\n  fmoe-pack convert --in %s --out %s",
			dir, shellQuote(dir), shellQuote(SuggestPackDir(dir)))
	default:
		e.msg = fmt.Sprintf("%s is not a packed model (no manifest, %s) nor a checkpoint fmoe-pack convert reads (config.json beside *.safetensors)", dir, ManifestName)
	}
	return e
}

// IsCheckpoint reports whether dir looks like a Hugging Face or MLX checkpoint: a config.json
// beside one or more .safetensors files (or their index).
func IsCheckpoint(dir string) bool {
	if st, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || !st.Mode().IsRegular() {
		return false
	}
	st, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	idx, _ := filepath.Glob(filepath.Join(dir, "*.safetensors.index.json"))
	return len(st) > 0 || len(idx) > 0
}

// SuggestPackDir is where to write the packed copy of checkpoint dir: a sibling named
// after it (never inside it: convert refuses an output inside its input).
func SuggestPackDir(dir string) string {
	clean := filepath.Clean(dir)
	if abs, err := filepath.Abs(clean); err == nil && filepath.Dir(abs) == abs {
		return filepath.Join(clean, "..", "fmoe-packed") // the root has no sibling
	}
	return clean + "-fmoe"
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters, so that
// the suggested command can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./+=:@%,~") == "" && !strings.HasPrefix(s, "~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
