//go:build !linux

package partial

// Without /proc a pid's start time is unknown: a live pid is then taken as the owner (never
// removing a partial that might be in use), a free one as proof of death.
func startTime(pid int) string { return "" }

func bootID() string { return "" }
