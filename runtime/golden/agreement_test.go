package golden

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/model"
)

func TestKL(t *testing.T) {
	p := []float32{1, 2, 3}
	if kl := KL(p, p); math.Abs(kl) > 1e-12 {
		t.Errorf("KL(p,p) = %g", kl)
	}
	// softmax([0, ln 3]) = [1/4, 3/4]; against uniform: 1/4 ln(1/2) + 3/4 ln(3/2).
	want := 0.25*math.Log(0.5) + 0.75*math.Log(1.5)
	if kl := KL([]float32{0, float32(math.Log(3))}, []float32{0, 0}); math.Abs(kl-want) > 1e-6 {
		t.Errorf("KL = %g, want %g", kl, want)
	}
}

// TestQuantisedAgreement packs the bf16 fixture at 16, 8, 4 and 2 bits and measures each against
// the bf16 golden. 16 bits must be exact; fewer bits must degrade monotonically.
func TestQuantisedAgreement(t *testing.T) {
	f, err := Load("../../testdata/tiny/golden/bf16-long.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	prev := -1.0
	for _, bits := range []int{16, 8, 4, 2} {
		m, err := model.Open(packTiny(t, "hf", bits), model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := Agree(m, f)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, fmt.Sprintf("| %d | %d | %.1f%% | %.4f | %.4f |", bits, a.Positions, 100*a.Top1Rate(), a.MeanKL, a.MaxKL))
		if bits == 16 && (a.Top1 != a.Positions || a.MeanKL > 1e-6) {
			t.Errorf("16-bit pack is not exact: %+v", a)
		}
		if a.MeanKL < prev {
			t.Errorf("%d bits: mean KL %.4f is below the previous (more bits) %.4f", bits, a.MeanKL, prev)
		}
		prev = a.MeanKL
	}
	t.Logf("tiny/hf vs bf16-long golden (experts at the given bits, dense matrices at max(4, bits)):\n| bits | positions | top-1 | mean KL | max KL |\n|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
}
