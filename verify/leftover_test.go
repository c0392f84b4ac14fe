package verify

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/partial"
)

// Partial outputs of interrupted runs, beside the model (convert) and inside it (requant,
// lz4), are reported as warnings; the model still verifies.
func TestLeftoversWarned(t *testing.T) {
	dir, _ := copyPack(t, "mlx-4bit")
	beside, err := partial.Create(filepath.Dir(dir), filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer beside.Abandon()
	inside, err := partial.Create(dir, "packed_experts_2bit")
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Abandon()
	// Another model's partial in the same parent is not this model's business.
	os.Mkdir(filepath.Join(filepath.Dir(dir), ".unrelated.partial-1"), 0o700)
	r := run(t, Options{Model: dir})
	if !r.OK || len(r.Warnings) != 2 {
		t.Fatalf("ok %v, warnings %q", r.OK, r.Warnings)
	}
	for i, p := range []string{inside.Path, beside.Path} {
		if !strings.HasPrefix(r.Warnings[i], p+" is the partial output of an interrupted or running fmoe-pack") {
			t.Errorf("warning %d: %q, want it to name %s", i, r.Warnings[i], p)
		}
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "warning: "+beside.Path) || !strings.HasSuffix(text.String(), "OK\n") {
		t.Errorf("text report:\n%s", text.String())
	}
}
