package pack

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format/formattest"
)

// requant refuses a re-signed manifest with an offset near 2^63 or a path out of the model
// before writing anything: it used to panic in a worker and leave a .partial- folder behind.
func TestRequantRefusesHostileManifests(t *testing.T) {
	for _, h := range formattest.HostileEdits() {
		dir := rqPack(t, "mlx-4bit", Options{})
		formattest.Resign(t, dir, h.Mutate)
		before := snapshot(t, dir)
		_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax"})
		if err == nil || !strings.Contains(err.Error(), h.Want) {
			t.Errorf("%s: %v, want %q", h.Name, err, h.Want)
		}
		sameSnapshot(t, before, snapshot(t, dir))
		if left, _ := filepath.Glob(filepath.Join(dir, ".*partial*")); len(left) > 0 {
			t.Errorf("%s: left %v", h.Name, left)
		}
	}
}
