package metal

// bufID is a device buffer handle (an MTLBuffer retained by the bridge, or
// a simulator buffer number). 0 is never a valid buffer.
type bufID uintptr

// arg is one kernel argument at its [[buffer(slot)]] index, slots being the
// argument's position: a buffer at a byte offset, or a 4-byte scalar
// (kind 'i' int32, 'f' float32) that Metal binds with setBytes.
type arg struct {
	buf  bufID
	off  int
	kind byte // 0 for a buffer
	bits uint32
}

// device is what the backend needs from a GPU: Metal on darwin/arm64, the
// CPU simulator in tests. Encoding calls (dispatch, copyBuf, zeroBuf) only
// record work; commit submits it and wait blocks until everything
// submitted has run, reporting the first error since the last wait.
// upload and download touch buffer memory from the host directly, so the
// backend calls them only for bytes no pending work uses.
type device interface {
	describe() string
	// maxThreadgroupMemory is the threadgroup memory one threadgroup may
	// use, in bytes (32 KiB on Apple GPUs).
	maxThreadgroupMemory() int
	// maxThreads is a kernel's maxTotalThreadsPerThreadgroup (register
	// pressure can put it below 1024); 0 if there is no such kernel.
	maxThreads(kernel string) int

	newBuffer(bytes int) (bufID, error) // zeroed
	// newBufferNoCopy wraps host memory in place: page-aligned, a whole
	// number of pages, not Go-managed, valid until release. ok is false
	// where the device cannot (the simulator).
	newBufferNoCopy(host []byte) (id bufID, ok bool, err error)
	release(b bufID)
	upload(b bufID, off int, src []byte)
	download(b bufID, off int, dst []byte)

	dispatch(kernel string, gx, gy, threads, shared int, args []arg)
	copyBuf(dst bufID, dstOff int, src bufID, srcOff, n int)
	zeroBuf(b bufID, off, n int)
	commit()
	wait() error
	close() error
}
