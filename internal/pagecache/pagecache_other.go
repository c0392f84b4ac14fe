//go:build !linux

package pagecache

import "os"

// Drop is unsupported here.
func Drop(*os.File) error { return ErrUnsupported }

// WillNeed is unsupported here.
func WillNeed(*os.File) error { return ErrUnsupported }
