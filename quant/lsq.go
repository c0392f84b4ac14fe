package quant

// lsqIters caps the alternating fit. Almost every group converges (the bf16
// parameters repeat) within two rounds; 20 rounds changed nothing
// measurable on the study data, so the cap only bounds rare cycling groups.
const lsqIters = 6

// lsqShrink are extra starting ranges, as fractions of the group's range
// about its midpoint. Alternating least squares only finds a local optimum
// near its start, and at 2 bits the optimum clips the tails (for Gaussian
// data the best uniform 4-level grid spans about 0.6 of a 64-value group's
// range). On the study data these two starts cut the squared error by ~10%;
// three or five starts, or other fractions, gained under 0.2% more.
var lsqShrink = [...]float32{0.75, 0.6}

// fit is a candidate's score plus the level sums the normal equations need.
type fit struct {
	p            params
	sse          float64
	worst        float32
	sq, sqq, sqx float64
}

// evalGroup assigns levels exactly as packGroup will and measures the error
// of the float32 dequantisation the runtime will compute.
func evalGroup(x []float32, p params, nf float32) fit {
	// Plain locals, not fields of f, so the compiler keeps them in
	// registers; two of each float sum, so consecutive elements do not wait
	// on one add chain; integer level sums. This loop dominates RuleLSQ.
	ds, b, as, ab := BF16ToF32(p.s16), BF16ToF32(p.b16), p.as, p.ab
	var sse0, sse1, sqx0, sqx1 float64
	var sq, sqq uint32      // at most 128 * 255^2: no overflow
	var over, under float32 // extreme signed errors: predictable branches
	x = x[:len(x)&^1]
	for i := 0; i < len(x); i += 2 {
		v0, v1 := x[i], x[i+1]
		q0, q1 := level(v0, as, ab, nf), level(v1, as, ab, nf)
		f0, f1 := float32(q0), float32(q1)
		d0 := float32(float32(f0*ds)+b) - v0
		d1 := float32(float32(f1*ds)+b) - v1
		sse0 += float64(d0) * float64(d0)
		sse1 += float64(d1) * float64(d1)
		sqx0 += float64(f0) * float64(v0)
		sqx1 += float64(f1) * float64(v1)
		sq += q0 + q1
		sqq += q0*q0 + q1*q1
		over, under = max(over, d0, d1), min(under, d0, d1)
	}
	return fit{p: p, sse: sse0 + sse1, worst: max(over, -under), sq: float64(sq), sqq: float64(sqq), sqx: sqx0 + sqx1}
}

// lsqParams is RuleLSQ. Every candidate is scored with its bf16-rounded
// parameters and the exact level assignment packGroup uses, so the choice
// is never worse than RuleMinMax or RuleMLX (both are candidates, scored
// identically to how those rules pack). Candidates whose worst element
// exceeds ErrorBound(RuleLSQ) are skipped; both starts satisfy it, so the
// per-element guarantee holds while the squared error is still minimised.
func lsqParams(x []float32, lo, hi float32, bits int) params {
	n := 1<<bits - 1
	nf := float32(n)
	// The margin keeps the bound for the exact difference too, not only
	// for the float32-rounded one measured here.
	limit := ErrorBound(RuleLSQ, bits, lo, hi) * (1 - 0x1p-12)

	best := evalGroup(x, minMaxParams(lo, hi, n), nf)
	if m := evalGroup(x, mlxParams(lo, hi, n), nf); m.sse < best.sse {
		best = m
	}
	if !best.p.ok(nf) {
		return best.p // overflow; quantizeGroup reports it
	}
	mid, half := lo+(hi-lo)/2, (hi-lo)/2
	for _, f := range lsqShrink {
		p := minMaxParams(mid-half*f, mid+half*f, n)
		if !p.ok(nf) {
			continue
		}
		if c := evalGroup(x, p, nf); c.sse < best.sse && c.worst <= limit {
			best = c
		}
	}

	var sx float64
	for _, v := range x {
		sx += float64(v)
	}
	count := float64(len(x))
	cur := best
	for range lsqIters {
		det := count*cur.sqq - cur.sq*cur.sq
		if det <= 0 { // all levels equal: the scale is unconstrained
			break
		}
		s := (count*cur.sqx - cur.sq*sx) / det
		b := (sx - s*cur.sq) / count
		p := rounded(F32ToBF16(float32(s)), F32ToBF16(float32(b)))
		if p == cur.p || !p.ok(nf) || BF16ToF32(p.s16) == 0 {
			break
		}
		cur = evalGroup(x, p, nf)
		if cur.sse < best.sse && cur.worst <= limit {
			best = cur
		}
	}
	return best.p
}
