//go:build !unix

package fsguard

import (
	"fmt"
	"os"
)

// openNonBlocking checks the type before opening where O_NONBLOCK does not exist.
func openNonBlocking(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file: fmoe reads models only from regular files", path, kind(st.Mode()))
	}
	return os.Open(path)
}
