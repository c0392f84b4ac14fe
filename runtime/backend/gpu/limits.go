package gpu

// Limits are what a device allows the launches; Ops plans within them.
type Limits struct {
	// MaxGridY bounds grid.y (CUDA: 65535); 0 means none (Metal). Token and
	// head counts above it are refused, row lists are launched in chunks.
	MaxGridY int
	// MaxShared is the shared (threadgroup) memory one block may use, in
	// bytes: CUDA's opt-in maximum, Metal's 32 KiB.
	MaxShared int
	// SharedAlign rounds shared-memory sizes up (Metal's
	// setThreadgroupMemoryLength wants multiples of 16); 0 or 1: none.
	SharedAlign int
	// DataAlign is the byte alignment the fast matvec needs of a weight's
	// data offset in its buffer (it reads uint4); 0 or 1: none.
	DataAlign int
	// MaxThreads, if set, is a kernel's largest block (Metal's
	// maxTotalThreadsPerThreadgroup, CUDA's MAX_THREADS_PER_BLOCK): register
	// pressure can put it below 1024; nil means every block size the plans
	// choose is allowed.
	MaxThreads func(Kernel) int
	// SMs is the number of multiprocessors, where known: a matvec with
	// too few row groups to give each two blocks of 8 warps uses 4-warp
	// blocks. 0: unknown (Metal does not report its core count).
	SMs int
	// MatvecBlocks bounds the blocks of one matvec; they loop over row
	// groups, so a few per SM (or GPU core) suffice.
	MatvecBlocks int
	// MatvecRows is the rows each warp of the fast matvec takes: matvec.h's
	// MV_NR as the module was compiled; 0 means the header's 2.
	MatvecRows int
	// MatvecWarps is the warps per fast-matvec block; 0 means 8. Where the
	// blocks would not give every SM two, it is halved, down to 4.
	MatvecWarps int
}

// mvRows is MV_NR of the compiled module.
func (l *Limits) mvRows() int {
	if l.MatvecRows > 0 {
		return l.MatvecRows
	}
	return 2
}

// threads is want threads per block, lowered to what k's pipeline allows
// (a multiple of 32: the bodies work in whole warps).
func (l *Limits) threads(k Kernel, want int) int {
	if l.MaxThreads == nil {
		return want
	}
	return max(32, min(want, l.MaxThreads(k)&^31))
}

// warps lowers want warps to what k's pipeline allows.
func (l *Limits) warps(k Kernel, want int) int {
	if l.MaxThreads == nil {
		return want
	}
	return min(want, l.MaxThreads(k)/32)
}

func (l *Limits) shared(n int) int {
	if l.SharedAlign <= 1 {
		return n
	}
	return (n + l.SharedAlign - 1) / l.SharedAlign * l.SharedAlign
}
