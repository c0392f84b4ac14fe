package gpu

import (
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Kernel is an entry point of the shaders module.
type Kernel uint8

const (
	kMatvecGeneric Kernel = iota
	kDequant
	kRMSNorm
	kRope
	kAttention
	kConv1D
	kDeltaPrep
	kDeltaStep
	kSwiGLU
	kAdd
	kGatedAdd
	kGather
	kScatterAdd
	kMLAQ
	kMLAAttention
	kMLAO
	kArgMax
	// kMatvec is the first of the fast matvecs: format f (Q2..F32), one or
	// four tokens per pass, at kMatvec + 2*(f-Q2) + (0 or 1).
	kMatvec
)

// NumKernels is the number of entry points; Kernel values are 0..NumKernels-1.
const NumKernels = int(kMatvec) + 2*int(backend.F32-backend.Q2+1)

// names are the entry points' names, the fast matvecs' filled in by init.
var names = [NumKernels]string{
	kMatvecGeneric: "matvec_generic", kDequant: "dequant", kRMSNorm: "rmsnorm", kRope: "rope",
	kAttention: "attention", kConv1D: "conv1d", kDeltaPrep: "delta_prep", kDeltaStep: "delta_step",
	kSwiGLU: "swiglu", kAdd: "add", kGatedAdd: "gated_add", kGather: "gather", kScatterAdd: "scatter_add",
	kMLAQ: "mla_qabsorb", kMLAAttention: "mla_attention", kMLAO: "mla_oabsorb", kArgMax: "argmax_finite",
}

// matvec is the fast matvec kernel for f taking four tokens per pass or one.
func matvec(f backend.Format, four bool) Kernel {
	k := kMatvec + Kernel(2*(f-backend.Q2))
	if four {
		k++
	}
	return k
}

// String is the entry point's name in the kernel source.
func (k Kernel) String() string { return names[k] }

func init() {
	for f := backend.Q2; f <= backend.F32; f++ {
		names[matvec(f, false)] = fmt.Sprintf("matvec_%v_t1", f)
		names[matvec(f, true)] = fmt.Sprintf("matvec_%v_t4", f)
	}
}

// Matvec reports whether k is a fast matvec, whose x staging area is
// dynamic shared memory of up to Limits.MaxShared bytes.
func (k Kernel) Matvec() bool { return k >= kMatvec }

// Bounds of the kernel bodies, mirrored from their headers.
const (
	attMaxDim   = 32 * 8  // 32·ATT_MAXI, attention.h
	attMaxWarps = 16      // ATT_MAXW, attention.h
	latMaxL     = 32 * 16 // 32·LAT_MAXL, latent.h
	latMaxR     = 32 * 4  // 32·LAT_MAXR, latent.h
	latMaxWarps = 8       // LAT_MAXW, latent.h
	convMaxK    = 8       // CONV_MAXK, recurrent.h
	deltaMaxDk  = 32 * 8  // 32·DELTA_MAXW, recurrent.h
	mvWarps     = 8       // SIMD groups per matvec block, MV_NR rows each (matvec.h); Limits.MatvecWarps overrides
)
