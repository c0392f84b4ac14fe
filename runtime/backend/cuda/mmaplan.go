package cuda

import (
	"encoding/binary"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The tensor-core matmul's launch plan, apart from the cgo code so that
// TestMMAKernelEmulated, which runs the kernel on the CPU, launches it as
// the backend would on any build.

// Tile shape of mma_cuda.h, mirrored.
const (
	mmaBM      = 64
	mmaBN      = 128
	mmaBK      = 32
	mmaThreads = 256
	mmsBM      = 16 // the grouped kernel's skinny tile (mms_body)
)

// mmaFits reports whether mma_cuda.h takes a weight of format f, shape
// [rows, cols] and group g: the formats whose values bf16 holds exactly
// (F16 and F32 weights would not be exact), whole 32-column K steps, and
// groups that are whole K steps.
func mmaFits(f backend.Format, cols, g int) bool {
	switch f {
	case backend.Q2, backend.Q4, backend.Q8:
		return cols%mmaBK == 0 && g > 0 && g%mmaBK == 0 && cols%g == 0
	case backend.BF16:
		return cols%mmaBK == 0
	}
	return false
}

// mmaPlan splits K so that a launch fills the card: with fewer output
// tiles than SMs each block column takes kLen columns (a multiple of unit,
// the K step and the group), and the splits' partials are summed after.
func mmaPlan(T, R, C, unit, sms int) (ntiles, mtiles, splits, kLen int) {
	ntiles, mtiles = (R+mmaBN-1)/mmaBN, (T+mmaBM-1)/mmaBM
	splits, kLen = 1, C
	if tiles := ntiles * mtiles; tiles < sms {
		want := min((sms+tiles-1)/tiles, C/unit)
		kLen = (C/unit + want - 1) / want * unit
		splits = (C + kLen - 1) / kLen
	}
	return ntiles, mtiles, splits, kLen
}

// mmaUnit is the granularity of a K split: whole 32-column steps and, for
// the affine formats, whole groups (mmaFits makes one a multiple of the
// other).
func mmaUnit(f backend.Format, g int) int {
	if f.Quantized() {
		return max(mmaBK, g)
	}
	return mmaBK
}

// mmaGroupedCols is the most columns of K one block of MatMulBatch's
// grouped kernel takes (rounded up to whole units); FMOE_CUDA_MMA_GCOLS
// sets another for a measurement.
const mmaGroupedCols = 1024

// mmaGroupedSplit is the K split of MatMulBatch's jobs, blocks of at most
// cols columns (rounded up to whole units), from the weight's width and
// unit alone, never from a job's rows or its batch: a job's bits are then
// the same in a batch of one (a cache miss) as among a layer's hits. Split,
// an expert's few tokens fill more blocks (a 4096-wide gate at 1024
// columns: 32 for one expert instead of 8, each over 1024 columns, not 4096
// in turn), at the price of the partials' traffic.
func mmaGroupedSplit(C, unit, cols int) (splits, kLen int) {
	kLen = (cols + unit - 1) / unit * unit
	if kLen >= C {
		return 1, C
	}
	return (C + kLen - 1) / kLen, kLen
}

// mmaGroupedPart is the bytes of a job's split-K partials: splits tiles of
// T × rows float32 values (none with one split).
func mmaGroupedPart(splits, T, rows int) int {
	if splits == 1 {
		return 0
	}
	return 4 * splits * T * rows
}

// appendMMAJob appends one mma_job (mma_cuda.h; TestMMAJobLayout checks
// the layout against the C++ struct) to a job table: the weight's data,
// scales and biases, x, y, the partials (0: one split), then T.
func appendMMAJob(tab []byte, w, s, b, x, y, part uint64, T int) []byte {
	for _, v := range [...]uint64{w, s, b, x, y, part, uint64(T)} {
		tab = binary.LittleEndian.AppendUint64(tab, v)
	}
	return tab
}
