package verify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/formattest"
)

// A re-signed manifest with an offset near 2^63 or a path out of the model is reported as a
// problem, never a panic (issue 11: verify panicked on the offset).
func TestHostileManifestsReported(t *testing.T) {
	for _, h := range formattest.HostileEdits() {
		dir, _ := copyPack(t, "mlx-4bit")
		formattest.Resign(t, dir, h.Mutate)
		r := run(t, Options{Model: dir})
		if r.OK || r.ProblemCount != 1 || !strings.Contains(r.Problems[0].Message, h.Want) {
			t.Errorf("%s: %+v, want one problem containing %q", h.Name, r.Problems, h.Want)
		}
	}
}

// An expert file that is a symlink to a file outside the model is reported.
func TestSymlinkOutOfModelReported(t *testing.T) {
	dir, m := copyPack(t, "mlx-4bit")
	rel := filepath.Join(m.Experts[0].Dir, m.Experts[0].Layers[1].File)
	outside := filepath.Join(t.TempDir(), "elsewhere.bin")
	if err := os.Rename(filepath.Join(dir, rel), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
	r := run(t, Options{Model: dir})
	p := wantProblem(t, r, "structure", Problem{File: rel})
	if !strings.Contains(p.Message, "outside the model directory") {
		t.Errorf("problem %+v", p)
	}
}

// fmoe-verify on an unpacked checkpoint says to pack it, with the command.
func TestUnpackedCheckpointSaysConvert(t *testing.T) {
	dir := tiny + "mlx-4bit"
	r := run(t, Options{Model: dir})
	p := wantProblem(t, r, "structure", Problem{File: format.ManifestName})
	if want := "fmoe-pack convert --in " + dir + " --out " + dir + "-fmoe"; !strings.Contains(p.Message, want) {
		t.Errorf("%q lacks %q", p.Message, want)
	}
}
