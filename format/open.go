package format

import (
	"fmt"
	"os"
	"path/filepath"
)

// Open reads, checks and validates the manifest of the packed model in dir, and checks that
// model_weights.bin and every expert file exist with exactly the sizes the manifest records.
// It does not read tensor data: fmoe-verify checks contents.
func Open(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := Validate(m); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	for _, p := range m.Paths() {
		if err := CheckInside(dir, p); err != nil {
			return nil, err
		}
	}
	if err := checkSize(filepath.Join(dir, m.Weights.File), m.Weights.Size); err != nil {
		return nil, err
	}
	for i := range m.Experts {
		s := &m.Experts[i]
		for _, l := range s.Layers {
			if err := checkSize(filepath.Join(dir, s.Dir, l.File), l.Size); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func checkSize(path string, want int64) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("packed model: %w", err)
	}
	if st.Size() != want {
		what := "truncated"
		if st.Size() > want {
			what = "longer than recorded"
		}
		return fmt.Errorf("packed model: %s is %d bytes, the manifest records %d (%s)", path, st.Size(), want, what)
	}
	return nil
}
