package model

import (
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// rowsBackend gives a backend RegisterRows by copying the parts' bytes into
// one weight (host memory, tests only; the CUDA backend lays the parts out
// in one device allocation instead), so that the model's fused path runs
// on the CPU. The parts are registered alone.
type rowsBackend struct {
	backend.Backend
	calls int
	rows  []int // every whole's row count
}

func (b *rowsBackend) RegisterRows(ws []backend.Weight) (backend.Tensor, []backend.Tensor, error) {
	all := backend.Weight{Cols: ws[0].Cols, Format: ws[0].Format, Group: ws[0].Group}
	parts := make([]backend.Tensor, len(ws))
	for i, w := range ws {
		all.Rows += w.Rows
		all.Data = append(slices.Clip(all.Data), w.Data...)
		all.Scales = append(slices.Clip(all.Scales), w.Scales...)
		all.Biases = append(slices.Clip(all.Biases), w.Biases...)
		t, err := b.Register(w)
		if err != nil {
			return nil, nil, err
		}
		parts[i] = t
	}
	whole, err := b.Register(all)
	if err != nil {
		return nil, nil, err
	}
	b.calls++
	b.rows = append(b.rows, all.Rows)
	return whole, parts, nil
}

// rowsTestBackend is the test backend where it registers rows itself
// (CUDA), else the CPU (or the test backend) wrapped in rowsBackend, which
// it also returns.
func rowsTestBackend(t *testing.T) (backend.Backend, *rowsBackend) {
	return standInBackend(t, func(b backend.Backend) bool { _, ok := b.(backend.RowConcatenator); return ok },
		func(b backend.Backend) *rowsBackend { return &rowsBackend{Backend: b} })
}

// standInBackend is the test backend where it has a capability itself
// (has), else the CPU (or the test backend) wrapped in a stand-in for it
// (wrap), which it also returns.
func standInBackend[W any](t *testing.T, has func(backend.Backend) bool, wrap func(backend.Backend) *W) (backend.Backend, *W) {
	tb := testBackend(t)
	if tb != nil && has(tb) {
		return tb, nil
	}
	if tb == nil {
		tb = cpu.New(cpu.Options{})
		t.Cleanup(func() { tb.Close() })
	}
	w := wrap(tb)
	return any(w).(backend.Backend), w
}

// TestGoldenFusedRows: with a backend that registers weights as one
// tensor's rows, every GatedDeltaNet layer's input projections, every
// shared expert's gate and up, and every router with its shared expert's
// gate are fused, and a golden run (prompt, then
// decode steps that use the fused tensors) computes the unfused run's
// logits bit for bit and stays within the goldens' tolerance.
func TestGoldenFusedRows(t *testing.T) {
	defer func(v bool) { fuseOff = v }(fuseOff)
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, c.golden)
			fuseOff = true
			ref, _ := goldenRun(t, open(t, c.src, c.bits, c.k, Options{Backend: testBackend(t)}), g)
			fuseOff = false
			tb, rb := rowsTestBackend(t)
			m := open(t, c.src, c.bits, c.k, Options{Backend: tb})
			cfg := &m.Config
			delta := 0
			for l := range m.layers {
				if m.layers[l].inProj != nil {
					delta++
				}
				sh := cfg.SharedExpertIntermediateSize > 0
				if (m.layers[l].shGU != nil) != sh || (m.layers[l].routerSh != nil) != sh {
					t.Errorf("layer %d: shared expert's gate and up fused %v, router and its gate %v", l,
						m.layers[l].shGU != nil, m.layers[l].routerSh != nil)
				}
			}
			if delta == 0 {
				t.Fatal("no GatedDeltaNet layer's input projections fused")
			}
			want := cfg.ConvDim() + cfg.LinearNumValueHeads*(cfg.LinearValueHeadDim+2)
			if rb != nil && !slices.Contains(rb.rows, want) {
				t.Errorf("fused row counts %v lack the in-projections' %d", rb.rows, want)
			}
			got, _ := goldenRun(t, m, g)
			if i := firstDiff(got, ref); i >= 0 {
				t.Errorf("logit %d is %v fused, %v unfused", i, got[i], ref[i])
			}
			checkGoldenLogits(t, got, g, m.Config.VocabSize)
		})
	}
}

// TestFamilyFusedRows: GLM-4.5's and DeepSeek-V3's shared experts fuse
// their gate and up the same way, bit for bit the unfused run, within the
// family goldens' tolerance (Qwen3-MoE has no shared expert: nothing fuses).
func TestFamilyFusedRows(t *testing.T) {
	defer func(v bool) { fuseOff = v }(fuseOff)
	for _, c := range familyCases {
		t.Run(c.family+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, "../../arch/"+c.family+"/golden/"+c.golden)
			src := "../arch/" + c.family + "/hf"
			fuseOff = true
			ref, _ := goldenRun(t, open(t, src, 16, c.k, Options{}), g)
			fuseOff = false
			tb, _ := rowsTestBackend(t)
			m := open(t, src, 16, c.k, Options{Backend: tb})
			fused := 0
			for l := range m.layers {
				if m.layers[l].shGU != nil {
					fused++
				}
				if (m.layers[l].shGU != nil) != (m.layers[l].shGate != nil) {
					t.Errorf("layer %d: shared expert %v, fused %v", l, m.layers[l].shGate != nil, m.layers[l].shGU != nil)
				}
			}
			if shared := m.Config.SharedExpertIntermediateSize > 0; shared != (fused > 0) {
				t.Errorf("%d layers fused their shared expert; the config's shared expert: %v", fused, shared)
			}
			got, _ := goldenRun(t, m, g)
			if i := firstDiff(got, ref); i >= 0 {
				t.Errorf("logit %d is %v fused, %v unfused", i, got[i], ref[i])
			}
		})
	}
}
