package golden

import (
	"fmt"
	"math"
	"os"
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
// Qwen3.5, and checks docs/quantization.md holds exactly its figures.
func TestFamilyQuantisedAgreement(t *testing.T) {
	if testing.Short() {
		t.Skip("packs each family four times")
	}
	var doc string
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
			if doc == "" {
				doc = readDoc(t, "../../docs/quantization.md")
			}
			checkDocRow(t, doc, fam, bits, a)
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

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkDocRow finds docs/quantization.md's row for fam at bits and compares it with a: the
// same top-1 count, KLs within 2e-4 (the table's last digit; SIMD paths round differently).
func checkDocRow(t *testing.T, doc, fam string, bits int, a *Agreement) {
	t.Helper()
	prefix := fmt.Sprintf("| %s | %d | %d | ", fam, bits, a.Positions)
	i := strings.Index(doc, prefix)
	if i < 0 {
		t.Errorf("docs/quantization.md has no row %q", prefix)
		return
	}
	line := doc[i+len(prefix):]
	line = line[:strings.IndexByte(line, '\n')]
	var top1, mean, max float64
	if _, err := fmt.Sscanf(line, "%f%% | %f | %f |", &top1, &mean, &max); err != nil {
		t.Errorf("docs/quantization.md row %q: %v", prefix+line, err)
		return
	}
	if math.Abs(top1-100*a.Top1Rate()) > 0.05 || math.Abs(mean-a.MeanKL) > 2e-4 || math.Abs(max-a.MaxKL) > 2e-4 {
		t.Errorf("docs/quantization.md row %q; measured %.1f%% | %.4f | %.4f", prefix+line, 100*a.Top1Rate(), a.MeanKL, a.MaxKL)
	}
}
