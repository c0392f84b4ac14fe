//go:build !unix

package metal

// Without mmap (no Metal there either) host memory is ordinary Go memory,
// which Bind copies.
func allocHost(n int) ([]byte, error) { return make([]byte, n), nil }

func freeHost([]byte) error { return nil }
