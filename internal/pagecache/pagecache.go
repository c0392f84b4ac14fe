// Package pagecache asks the operating system to drop a file's pages from
// its cache or to read them ahead, for benchmarks that time cold and warm
// reads. Only Linux has the call (posix_fadvise); elsewhere both return
// ErrUnsupported, and the benchmarks that need a cold cache skip.
package pagecache

import "errors"

// ErrUnsupported: this platform cannot drop or prefetch a file's pages.
var ErrUnsupported = errors.New("pagecache: dropping or prefetching a file's cached pages is not supported on this platform")
