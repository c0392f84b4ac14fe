package quant

import "fmt"

// Requant4to2 requantises one 4-bit row (cols = 8*len(packed4)) to 2 bits
// with the same group size. Each group is dequantised exactly as the runtime
// would (float32(q)*scale + bias) and then quantised by rule, so the error
// is measured against what the 4-bit model actually computed with.
func Requant4to2(rule Rule, group int, packed4 []uint32, scales4, biases4 []uint16, packed2 []uint32, scales2, biases2 []uint16) error {
	return requantRow(rule, group, 4, packed4, scales4, biases4, 2, packed2, scales2, biases2)
}

// Requant requantises src into dst, which must have the same shape and group
// size; the bit widths may be anything supported (the packer uses 4 -> 2).
func Requant(rule Rule, dst, src *Matrix) error {
	if err := src.Check(); err != nil {
		return fmt.Errorf("%w (requant source)", err)
	}
	if err := dst.Check(); err != nil {
		return fmt.Errorf("%w (requant destination)", err)
	}
	if dst.Rows != src.Rows || dst.Cols != src.Cols || dst.Group != src.Group {
		return fmt.Errorf("quant: requant [%d, %d] group %d into [%d, %d] group %d: shapes and groups must match",
			src.Rows, src.Cols, src.Group, dst.Rows, dst.Cols, dst.Group)
	}
	for r := 0; r < src.Rows; r++ {
		sp, ss, sb := src.row(r)
		dp, ds, db := dst.row(r)
		if err := requantRow(rule, src.Group, src.Bits, sp, ss, sb, dst.Bits, dp, ds, db); err != nil {
			return fmt.Errorf("%w (row %d)", err, r)
		}
	}
	return nil
}

func requantRow(rule Rule, group, srcBits int, srcPacked []uint32, srcScales, srcBiases []uint16,
	dstBits int, dstPacked []uint32, dstScales, dstBiases []uint16) error {
	if err := rule.check(); err != nil {
		return err
	}
	if srcBits <= 0 || srcBits > 32 {
		return fmt.Errorf("quant: unsupported bits %d (want 2, 4 or 8)", srcBits)
	}
	cols := len(srcPacked) * 32 / srcBits
	if err := checkRow(cols, srcBits, group, len(srcPacked), len(srcScales), len(srcBiases)); err != nil {
		return fmt.Errorf("%w (requant source)", err)
	}
	if err := checkRow(cols, dstBits, group, len(dstPacked), len(dstScales), len(dstBiases)); err != nil {
		return fmt.Errorf("%w (requant destination)", err)
	}
	var buf [MaxGroup]float32
	x := buf[:group]
	swpg, dwpg := group*srcBits/32, group*dstBits/32
	for g := range srcScales {
		dequantizeGroup(srcPacked[g*swpg:(g+1)*swpg], BF16ToF32(srcScales[g]), BF16ToF32(srcBiases[g]), srcBits, x)
		s, b, err := quantizeGroup(rule, x, dstBits, dstPacked[g*dwpg:(g+1)*dwpg])
		if err != nil {
			return fmt.Errorf("quant: group at column %d: %w", g*group, err)
		}
		dstScales[g], dstBiases[g] = s, b
	}
	return nil
}
