package backendtest

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// twoCalls is the CPU backend with NormMatMul as the norm's call and
// MatMul's (backend.Norm.Apply), the contract's plainest form; skipAdd
// drops the add, a wrong one. So the suite's case runs, and is seen to
// tell a wrong backend, on machines without a GPU.
type twoCalls struct {
	backend.Backend
	skipAdd bool
}

func (b twoCalls) NormMatMul(n backend.Norm, y backend.Buffer, w backend.Tensor) error {
	n.Add = n.Add && !b.skipAdd
	if err := n.Apply(b.Backend); err != nil {
		return err
	}
	return b.MatMul(y, w, n.Y, 1)
}

func TestNormMatMulTwoCalls(t *testing.T) {
	be := twoCalls{Backend: cpu.New(cpu.Options{})}
	defer be.Close()
	testNormMatMul(t, be)
	// The case tells a backend that drops the add.
	bad := twoCalls{Backend: cpu.New(cpu.Options{}), skipAdd: true}
	defer bad.Close()
	if d := normMatMulDiff(t, bad); d == "" {
		t.Error("the NormMatMul case passed a backend that drops the add")
	} else {
		t.Logf("a backend that drops the add: %s", d)
	}
}
