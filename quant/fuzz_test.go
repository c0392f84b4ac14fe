package quant

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzQuantize feeds arbitrary float32 bit patterns through every rule and
// width: non-finite or bf16-overflowing input must be an error, anything
// else must match the reference transcription (RuleMLX) and stay within
// ErrorBound (every rule), also after requantising to 2 bits.
func FuzzQuantize(f *testing.F) {
	seed := make([]byte, 4*32)
	for i := range 32 {
		binary.LittleEndian.PutUint32(seed[4*i:], math.Float32bits(float32(i%7)-2.5))
	}
	f.Add(seed, uint8(1))
	f.Fuzz(func(t *testing.T, raw []byte, sel uint8) {
		const group = 32
		if len(raw) < 4*group {
			return
		}
		w := make([]float32, group)
		for i := range w {
			w[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		bits := []int{2, 4, 8}[int(sel)%3]
		p := make([]uint32, RowWords(group, bits))
		s, b := make([]uint16, 1), make([]uint16, 1)
		back := make([]float32, group)
		lo, hi, rangeErr := groupRange(w)
		for _, rule := range Rules {
			err := QuantizeRowWith(rule, w, bits, group, p, s, b)
			if rangeErr != nil {
				if err == nil {
					t.Fatalf("%s: no error for non-finite input", rule)
				}
				continue
			}
			if err != nil {
				// Only values beyond bf16's range may fail.
				if max(math.Abs(float64(lo)), math.Abs(float64(hi)))*2 < math.MaxFloat32 {
					t.Fatalf("%s: %v for range [%g, %g]", rule, err, lo, hi)
				}
				continue
			}
			if rule == RuleMLX {
				q, rs, rb := refQuantize(w, bits, group)
				if rs[0] != s[0] || rb[0] != b[0] {
					t.Fatalf("scale/bias %#04x/%#04x, reference %#04x/%#04x", s[0], b[0], rs[0], rb[0])
				}
				for i := range q {
					if unpack(p, bits, i) != q[i] {
						t.Fatalf("element %d: level %d, reference %d", i, unpack(p, bits, i), q[i])
					}
				}
			}
			DequantizeRow(p, s, b, bits, group, back)
			bound := float64(ErrorBound(rule, bits, lo, hi))
			for i := range w {
				if e := math.Abs(float64(back[i]) - float64(w[i])); e > bound {
					t.Fatalf("%s bits %d: element %d = %g -> %g, error %g > bound %g", rule, bits, i, w[i], back[i], e, bound)
				}
			}
			if bits != 4 {
				continue
			}
			// Requantise the 4-bit group and check the 2-bit bound too.
			p2, s2, b2 := make([]uint32, 2), make([]uint16, 1), make([]uint16, 1)
			if err := Requant4to2(rule, group, p, s, b, p2, s2, b2); err != nil {
				continue // 4-bit parameters at the edge of bf16's range
			}
			lo4, hi4, _ := groupRange(back)
			back2 := make([]float32, group)
			DequantizeRow(p2, s2, b2, 2, group, back2)
			bound2 := float64(ErrorBound(rule, 2, lo4, hi4))
			for i := range back {
				if e := math.Abs(float64(back2[i]) - float64(back[i])); e > bound2 {
					t.Fatalf("%s requant: element %d = %g -> %g, error %g > bound %g", rule, i, back[i], back2[i], e, bound2)
				}
			}
		}
	})
}
