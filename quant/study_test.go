package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// studyMatrix is one bf16 weight matrix to requantise.
type studyMatrix struct {
	rows, cols int
	w          []float32 // bf16 values
}

// syntheticExpert makes one 397B-shaped expert: gate and up [1024, 4096],
// down [4096, 1024], Gaussian with std 1/sqrt(in), plus heavy-tailed
// outliers (one element in 1024 scaled by 5/sqrt(U), U uniform, capped at
// 100x, a Pareto tail of index 2), rounded to bf16 like real checkpoints.
func syntheticExpert(seed uint64) []studyMatrix {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	mk := func(rows, cols int) studyMatrix {
		std := 1 / math.Sqrt(float64(cols))
		w := make([]float32, rows*cols)
		for i := range w {
			v := rng.NormFloat64() * std
			if rng.IntN(1024) == 0 {
				v *= min(5/math.Sqrt(1-rng.Float64()), 100)
			}
			w[i] = BF16ToF32(F32ToBF16(float32(v)))
		}
		return studyMatrix{rows, cols, w}
	}
	return []studyMatrix{mk(1024, 4096), mk(1024, 4096), mk(4096, 1024)}
}

// tinyExperts returns every expert matrix of the tiny hf checkpoint.
func tinyExperts(t testing.TB) []studyMatrix {
	hf := readSafetensorsDir(t, hfDir)
	var out []studyMatrix
	for name, st := range hf {
		if strings.Contains(name, ".mlp.experts.") && len(st.Shape) == 2 {
			out = append(out, studyMatrix{st.Shape[0], st.Shape[1], st.floats(t)})
		}
	}
	return out
}

// errStats accumulates squared error and the worst element relative to its
// group's 2-bit min/max step (range/3).
type errStats struct {
	sse, ref float64 // sum of squared error, sum of squared reference
	n        int
	worst    float64 // max |err| / (group range / 3)
	over     int     // elements beyond ErrorBound
}

func (e *errStats) add(o errStats) {
	e.sse += o.sse
	e.ref += o.ref
	e.n += o.n
	e.worst = max(e.worst, o.worst)
	e.over += o.over
}

func (e errStats) rmse() float64 { return math.Sqrt(e.sse / float64(e.n)) }
func (e errStats) rel() float64  { return math.Sqrt(e.sse / e.ref) }

// measure compares got against ref and ref2 (nil to skip) group by group,
// checking every element against ErrorBound(rule, 2, range of ref's group).
func measure(ref, ref2, got []float32, group int, rule Rule) (e, e2 errStats) {
	for g := 0; g < len(ref); g += group {
		r, d := ref[g:g+group], got[g:g+group]
		lo, hi, _ := groupRange(r)
		step := float64(hi-lo) / 3
		bound := ErrorBound(rule, 2, lo, hi)
		var over, under float32
		for i, v := range r {
			err := d[i] - v
			e.sse += float64(err) * float64(err)
			e.ref += float64(v) * float64(v)
			if err > over {
				over = err
			} else if err < under {
				under = err
			}
		}
		worst := max(over, -under)
		if worst > bound {
			for i, v := range r {
				if math.Abs(float64(d[i])-float64(v)) > float64(bound) {
					e.over++
				}
			}
		}
		if step > 0 {
			e.worst = max(e.worst, float64(worst)/step)
		}
		e.n += group
		if ref2 != nil {
			for i, v := range ref2[g : g+group] {
				err := float64(d[i]) - float64(v)
				e2.sse += err * err
				e2.ref += float64(v) * float64(v)
			}
			e2.n += group
		}
	}
	return e, e2
}

type studyRow struct {
	requant4 errStats // 4 -> 2 against the 4-bit dequantised values
	requantW errStats // 4 -> 2 against the bf16 original
	direct   errStats // bf16 -> 2 against the bf16 original
}

// study runs every rule on every matrix, two matrices at a time.
func study(t testing.TB, mats []studyMatrix, group int) (rows [4]studyRow, q4 errStats) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, m := range mats {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var local [4]studyRow
			m4, err := NewMatrix(m.rows, m.cols, 4, group)
			if err != nil {
				t.Error(err)
				return
			}
			if err := Quantize(m4, m.w); err != nil {
				t.Error(err)
				return
			}
			deq4 := make([]float32, len(m.w))
			Dequantize(deq4, m4)
			local4, _ := measure(m.w, nil, deq4, group, RuleMLX)
			m2, _ := NewMatrix(m.rows, m.cols, 2, group)
			deq2 := make([]float32, len(m.w))
			for _, rule := range Rules {
				if err := Requant(rule, m2, m4); err != nil {
					t.Error(err)
					return
				}
				Dequantize(deq2, m2)
				local[rule].requant4, local[rule].requantW = measure(deq4, m.w, deq2, group, rule)
				if err := QuantizeWith(rule, m2, m.w); err != nil {
					t.Error(err)
					return
				}
				Dequantize(deq2, m2)
				local[rule].direct, _ = measure(m.w, nil, deq2, group, rule)
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range rows {
				rows[i].requant4.add(local[i].requant4)
				rows[i].requantW.add(local[i].requantW)
				rows[i].direct.add(local[i].direct)
			}
			q4.add(local4)
		}()
	}
	wg.Wait()
	return rows, q4
}

// TestRequantStudy prints the 2-bit rule comparison for docs/quantization.md
// and asserts the guarantees: LSQ is never worse than MLX or fixed min/max,
// and every element of every rule is within ErrorBound.
func TestRequantStudy(t *testing.T) {
	const group = 64
	start := time.Now()
	sets := []struct {
		name string
		mats []studyMatrix
	}{{"tiny fixture experts (384 matrices)", tinyExperts(t)}}
	var syn []studyMatrix
	for e := range 3 {
		syn = append(syn, syntheticExpert(uint64(e))...)
	}
	sets = append(sets, struct {
		name string
		mats []studyMatrix
	}{"synthetic 397B experts (3 x gate/up/down)", syn})

	var b strings.Builder
	fmt.Fprintf(&b, "| data | rule | 4→2 RMSE vs 4-bit | 4→2 RMSE vs bf16 | bf16→2 RMSE vs bf16 | worst / step (4→2) |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|\n")
	for _, set := range sets {
		rows, q4 := study(t, set.mats, group)
		fmt.Fprintf(&b, "| %s | (4-bit MLX) | — | %.4g (%.2f%%) | — | — |\n", set.name, q4.rmse(), 100*q4.rel())
		for _, rule := range Rules {
			r := rows[rule]
			fmt.Fprintf(&b, "| | %s | %.4g (%.2f%%) | %.4g (%.2f%%) | %.4g (%.2f%%) | %.3f |\n", rule,
				r.requant4.rmse(), 100*r.requant4.rel(), r.requantW.rmse(), 100*r.requantW.rel(),
				r.direct.rmse(), 100*r.direct.rel(), r.requant4.worst)
			if n := r.requant4.over + r.direct.over; n > 0 {
				t.Errorf("%s: %s: %d elements beyond ErrorBound", set.name, rule, n)
			}
		}
		lsq := rows[RuleLSQ]
		for _, other := range []Rule{RuleMLX, RuleMinMax} {
			o := rows[other]
			if lsq.requant4.sse > o.requant4.sse || lsq.direct.sse > o.direct.sse {
				t.Errorf("%s: lsq SSE (%g, %g) worse than %s (%g, %g)", set.name,
					lsq.requant4.sse, lsq.direct.sse, other, o.requant4.sse, o.direct.sse)
			}
		}
	}
	t.Logf("group %d, RMSE absolute (relative to the reference's RMS)\n%s", group, b.String())
	t.Logf("study took %v", time.Since(start).Round(time.Millisecond))
}
