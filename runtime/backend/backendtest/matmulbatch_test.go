package backendtest

import (
	"fmt"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// loopBatcher is the CPU backend with MatMulBatch as one MatMul a job: the
// contract's plainest implementation, so that the suite's case runs (and
// is checked to pass) on machines without a GPU.
type loopBatcher struct{ backend.Backend }

func (l loopBatcher) MatMulBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer, Ts []int) error {
	if len(ys) != len(ws) || len(xs) != len(ws) || len(Ts) != len(ws) {
		return fmt.Errorf("batch of %d, %d, %d, %d", len(ys), len(ws), len(xs), len(Ts))
	}
	for i := range ws {
		if err := l.MatMul(ys[i], ws[i], xs[i], Ts[i]); err != nil {
			return err
		}
	}
	return nil
}

func TestMatMulBatchLoop(t *testing.T) {
	be := loopBatcher{cpu.New(cpu.Options{})}
	defer be.Close()
	testMatMulBatch(t, be)
}
