package golden

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/model"
)

// TestFamilyCheck is `fmoe-verify golden` on every golden file of the other
// families (testdata/arch), packed at 16 bits: within 1e-4, every greedy
// token identical.
func TestFamilyCheck(t *testing.T) {
	for _, fam := range []string{"qwen3_moe", "glm4_moe", "deepseek_v3"} {
		dir := packTiny(t, "../arch/"+fam+"/hf", 16)
		for _, g := range []struct {
			name string
			k    int
		}{{"bf16", 0}, {"bf16-long", 0}, {"bf16-k2", 2}} {
			m, err := model.Open(dir, model.Options{ExpertsPerToken: g.k})
			if err != nil {
				t.Fatal(err)
			}
			f, err := Load("../../testdata/arch/" + fam + "/golden/" + g.name + ".safetensors")
			if err != nil {
				t.Fatal(err)
			}
			r, err := Check(m, f, 1e-4)
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s: worst prompt %.2e, greedy %d/%d, worst generated %.2e", fam, g.name, r.WorstPrompt, r.SameTokens, r.Generated, r.WorstGenerated)
			if !r.Pass() || r.Generated == 0 {
				t.Errorf("%s %s fails: %+v", fam, g.name, r)
			}
		}
	}
}

// TestFamilyQuantisedAgreement measures 8-, 4- and 2-bit packs of each
// family against its bf16 golden, as TestQuantisedAgreement does for
// Qwen3.5 (docs/families.md has the figures).
func TestFamilyQuantisedAgreement(t *testing.T) {
	if testing.Short() {
		t.Skip("packs each family four times")
	}
	for _, fam := range []string{"qwen3_moe", "glm4_moe", "deepseek_v3"} {
		f, err := Load("../../testdata/arch/" + fam + "/golden/bf16-long.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		prev := -1.0
		for _, bits := range []int{16, 8, 4, 2} {
			m, err := model.Open(packTiny(t, "../arch/"+fam+"/hf", bits), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			a, err := Agree(m, f)
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, fmt.Sprintf("| %s | %d | %d | %.1f%% | %.4f | %.4f |", fam, bits, a.Positions, 100*a.Top1Rate(), a.MeanKL, a.MaxKL))
			if bits == 16 && (a.Top1 != a.Positions || a.MeanKL > 1e-6) {
				t.Errorf("%s: 16-bit pack is not exact: %+v", fam, a)
			}
			if a.MeanKL < prev {
				t.Errorf("%s %d bits: mean KL %.4f is below the previous (more bits) %.4f", fam, bits, a.MeanKL, prev)
			}
			prev = a.MeanKL
		}
		t.Logf("\n%s", strings.Join(rows, "\n"))
	}
}
