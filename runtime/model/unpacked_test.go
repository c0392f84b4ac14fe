package model

import (
	"errors"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// Opening the repository's own unpacked checkpoint says to pack it, with the command
// (issue 10: it said only "open …/model_weights.json: no such file or directory").
func TestOpenUnpackedCheckpointSaysConvert(t *testing.T) {
	const dir = "../../models/fmoe-tiny-chat/mlx-4bit"
	_, err := Open(dir, Options{})
	if !errors.Is(err, format.ErrNotPacked) {
		t.Fatalf("%v, want ErrNotPacked", err)
	}
	want := "fmoe-pack convert --in " + dir + " --out " + dir + "-fmoe"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%q lacks %q", err, want)
	}
}
