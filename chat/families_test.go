package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// familyFormats are the formats the published templates of
// testdata/families must be detected as.
var familyFormats = map[string]*Format{
	"glm45":        FormatGLM45,
	"deepseek_v31": FormatDeepSeek,
	"deepseek_v3":  FormatDeepSeek,
	"kimi_k2":      FormatKimiK2,
}

type familyCases struct {
	Reference string `json:"reference"`
	Families  map[string]struct {
		Template      string         `json:"template"`
		SpecialTokens map[string]any `json:"special_tokens"`
		Cases         []struct {
			Name string `json:"name"`
			goldenCase
			Rendered *string `json:"rendered"`
			Error    string  `json:"error"`
		} `json:"cases"`
	} `json:"families"`
}

func loadFamilyCases(t *testing.T) familyCases {
	t.Helper()
	data, err := os.ReadFile("testdata/families/render_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var fc familyCases
	if err := json.Unmarshal(data, &fc); err != nil {
		t.Fatal(err)
	}
	if len(fc.Families) < 3 {
		t.Fatalf("render_cases.json has %d families", len(fc.Families))
	}
	return fc
}

func familyTemplate(t *testing.T, file string, special map[string]any) *Template {
	t.Helper()
	tpl, err := ParseTemplate(mustRead(t, filepath.Join("testdata/families", file)))
	if err != nil {
		t.Fatal(err)
	}
	tpl.special = special
	return tpl
}

// TestFamilyTemplates renders each family's published chat template through
// the Jinja interpreter and compares byte for byte with real Jinja2 in
// Hugging Face's environment (scripts/goldens/chat_families.py).
func TestFamilyTemplates(t *testing.T) {
	fc := loadFamilyCases(t)
	for fam, f := range fc.Families {
		tpl := familyTemplate(t, f.Template, f.SpecialTokens)
		if want := familyFormats[fam]; tpl.Format() != want {
			t.Errorf("%s: template detected as format %q", fam, tpl.Format().Name)
		}
		rendered := 0
		for _, c := range f.Cases {
			t.Run(fam+"/"+c.Name, func(t *testing.T) {
				got, err := tpl.Render(c.Messages, c.Tools, c.renderOptions(t))
				if c.Rendered == nil {
					if err == nil {
						t.Fatalf("Jinja2 failed (%s), fmoe rendered %q", c.Error, got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != *c.Rendered {
					t.Fatalf("mismatch at byte %d\n got: %q\nwant: %q", firstDiff(got, *c.Rendered), got, *c.Rendered)
				}
				rendered++
			})
		}
		if rendered < len(f.Cases)/2 {
			t.Errorf("%s: only %d of %d cases rendered", fam, rendered, len(f.Cases))
		}
	}
}
