package eval

import (
	"context"
	"testing"

	"github.com/fmoe/fmoe/runtime/model"
)

func TestAgree(t *testing.T) {
	f, err := Load(evalPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(packDir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	idx := []int{0, 1}
	a, err := Agree(context.Background(), m, m, f, idx)
	if err != nil {
		t.Fatal(err)
	}
	if a.Positions == 0 || a.Top1 != a.Positions || a.MeanKL > 1e-9 {
		t.Errorf("a model against itself: %+v, want full agreement and zero KL", a)
	}
	// Fewer experts per token changes the function: the comparison must see it.
	k2, err := model.Open(packDir, model.Options{ExpertsPerToken: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	b, err := Agree(context.Background(), k2, m, f, idx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Positions != a.Positions || b.MeanKL <= 1e-4 {
		t.Errorf("K=2 against K=4: %+v, want a positive KL over the same positions", b)
	}
	t.Logf("K=2 vs K=4 over %d positions: top-1 %d, mean KL %.4f", b.Positions, b.Top1, b.MeanKL)
}
