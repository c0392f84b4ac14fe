package cuda

import (
	"strings"
	"testing"
)

func TestParseMatvecConfig(t *testing.T) {
	for _, c := range []struct {
		in   string
		want MatvecConfig
		err  string
	}{
		{"", MatvecConfig{}, ""},
		{"nr=4,u=4,warps=8,bpsm=4", MatvecConfig{4, 4, 8, 4, 0, 0}, ""},
		{"depth=2", MatvecConfig{Depth: 2}, ""},
		{"depth=3", MatvecConfig{}, "depth=3: want 1 to 2"},
		{" u = 8 , nr=1 ,", MatvecConfig{Rows: 1, Unroll: 8}, ""},
		{"nr=0", MatvecConfig{}, "nr=0: want 1 to 8"},
		{"warps=33", MatvecConfig{}, "warps=33: want 1 to 32"},
		{"bpsm=x", MatvecConfig{}, `bpsm="x": want a whole number from 1 to 64`},
		{"rows=2", MatvecConfig{}, `unknown key "rows" (want nr, u, warps, bpsm, depth or minb)`},
		{"nr=2,nr=4", MatvecConfig{}, "nr given twice"},
		{"nr", MatvecConfig{}, `"nr" is not key=value`},
	} {
		got, err := ParseMatvecConfig(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestMatvecConfigResolve(t *testing.T) {
	got, err := MatvecConfig{Warps: 16}.resolve("warps=4,u=8")
	want := MatvecConfig{DefaultMatvecRows, 8, 16, DefaultMatvecBlocksPerSM, DefaultMatvecDepth, DefaultMatvecMinBlocks}
	if err != nil || got != want {
		t.Errorf("got %v, %v; want %v (options over the environment over the defaults)", got, err, want)
	}
	if _, err := (MatvecConfig{}).resolve("nr=9"); !IsConfigError(err) || !strings.Contains(err.Error(), `FMOE_CUDA_MV="nr=9"`) {
		t.Errorf("bad environment: %v", err)
	}
	if _, err := (MatvecConfig{Rows: -1}).resolve(""); err == nil || !strings.Contains(err.Error(), "Options.Matvec: nr=-1") {
		t.Errorf("bad option: %v", err)
	}
	// The batched matvecs: their own variable and defaults.
	got, err = MatvecConfig{}.resolveFrom("Options.BatchMatvec", "FMOE_CUDA_BATCH_MV", "u=4", defaultBatchMatvec)
	if want := (MatvecConfig{DefaultBatchMatvecRows, 4, DefaultMatvecWarps, DefaultMatvecBlocksPerSM, DefaultMatvecDepth, DefaultMatvecMinBlocks}); err != nil || got != want {
		t.Errorf("batched: got %v, %v; want %v", got, err, want)
	}
	if _, err := (MatvecConfig{}).resolveFrom("Options.BatchMatvec", "FMOE_CUDA_BATCH_MV", "nr=0", defaultBatchMatvec); !IsConfigError(err) || !strings.Contains(err.Error(), `FMOE_CUDA_BATCH_MV="nr=0"`) {
		t.Errorf("batched, bad environment: %v", err)
	}
	if s := want.String(); s != "nr=2,u=8,warps=16,bpsm=4,depth=1" {
		t.Errorf("String() = %q", s)
	}
	if d := want.defines(); strings.Join(d, " ") != "-DMV_NR=2 -DMV_U=8" {
		t.Errorf("defines() = %v", d)
	}
	deep := want
	deep.Depth = 2
	if d := deep.defines(); strings.Join(d, " ") != "-DMV_NR=2 -DMV_U=8 -DMV_DEPTH=2" {
		t.Errorf("depth 2: defines() = %v", d)
	}
}
