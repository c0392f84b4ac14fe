//go:build !(linux || darwin)

package hub

// lockFile is a no-op where flock is not available.
func lockFile(string) (func(), error) { return func() {}, nil }

// freeBytes is unknown here.
func freeBytes(string) int64 { return -1 }

// SameFileSystem is unknown here: assume not, so each folder's need is checked alone.
func SameFileSystem(a, b string) bool { return false }
