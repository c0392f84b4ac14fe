package cpu

import "github.com/fmoe/fmoe/runtime/backend"

// kernel picks the fast kernel for w: assembly where there is one for the
// format, else pure Go.
func (be *Backend) kernel(w *backend.Weight) kernel {
	if be.asm {
		if k := asmKernel(w); k != nil {
			return k
		}
	}
	if w.Format.Quantized() {
		return goQuant{}
	}
	return goDense{}
}
