package pack

import (
	"encoding/json"
	"testing"

	"github.com/fmoe/fmoe/format"
)

func configOf(t *testing.T, p *Preset) *format.Config {
	t.Helper()
	raw, _ := json.Marshal(synthConfig(p, p.Layers, true))
	c, err := format.ParseConfig(p.Name, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}
