package pack

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// encoded is a tensor ready to be stored: its manifest fields and its bytes.
type encoded struct {
	dtype  string
	shape  []int
	bits   int
	group  int
	rule   string
	data   []byte
	scales []byte
	biases []byte
}

// quantizeFloat quantises a float matrix (rows x cols, little-endian src of dtype) with the given
// rule. Rows are independent, so large matrices are split across workers in blocks of rows;
// done, if not nil, is told each finished block so the caller can release its source pages (a
// bf16 embedding is 2 GB: holding it all resident would dominate the packer's memory).
func quantizeFloat(rule quant.Rule, src []byte, dtype string, rows, cols, bits, group, workers int, done func(r0, r1 int)) (*encoded, error) {
	wordsPerRow := cols * bits / 32
	groups := cols / group
	elem, err := quant.ElemSize(dtype)
	if err != nil {
		return nil, err
	}
	e := &encoded{dtype: format.DTypeU32, shape: []int{rows, cols}, bits: bits, group: group, rule: rule.String(),
		data: make([]byte, rows*wordsPerRow*4), scales: make([]byte, rows*groups*2), biases: make([]byte, rows*groups*2)}
	err = parallelRows(rows, workers, func(r0, r1 int) error {
		row := make([]float32, cols)
		packed := make([]uint32, wordsPerRow)
		sc := make([]uint16, groups)
		bi := make([]uint16, groups)
		for r := r0; r < r1; r++ {
			if err := quant.DecodeFloats(dtype, src[r*cols*elem:(r+1)*cols*elem], row); err != nil {
				return err
			}
			if err := quant.QuantizeRowWith(rule, row, bits, group, packed, sc, bi); err != nil {
				return err
			}
			for i, w := range packed {
				binary.LittleEndian.PutUint32(e.data[(r*wordsPerRow+i)*4:], w)
			}
			for i := range sc {
				binary.LittleEndian.PutUint16(e.scales[(r*groups+i)*2:], sc[i])
				binary.LittleEndian.PutUint16(e.biases[(r*groups+i)*2:], bi[i])
			}
		}
		if done != nil {
			done(r0, r1)
		}
		return nil
	})
	return e, err
}

// rowBlock is how many rows a worker takes at a time: small enough that finished source pages
// can be released as the matrix is walked, large enough that handing out blocks costs nothing.
const rowBlock = 256

// parallelRows runs fn over [0, rows) in blocks of rowBlock rows, handed out to workers in order.
func parallelRows(rows, workers int, fn func(r0, r1 int) error) error {
	if workers < 1 {
		workers = 1
	}
	blocks := (rows + rowBlock - 1) / rowBlock
	workers = min(workers, blocks)
	var next atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for {
				b := int(next.Add(1) - 1)
				if b >= blocks {
					errs <- nil
					return
				}
				if err := fn(b*rowBlock, min((b+1)*rowBlock, rows)); err != nil {
					next.Store(int64(blocks)) // stop the others early
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// toBF16 converts float bytes to bf16 (copying when they already are).
func toBF16(src []byte, dtype string) ([]byte, error) {
	if dtype == format.DTypeBF16 {
		return src, nil
	}
	elem, err := quant.ElemSize(dtype)
	if err != nil {
		return nil, err
	}
	f := make([]float32, len(src)/elem)
	if err := quant.DecodeFloats(dtype, src, f); err != nil {
		return nil, err
	}
	out := make([]byte, len(f)*2)
	return out, quant.EncodeFloats(format.DTypeBF16, f, out)
}

// shiftNorm returns 1+w as F32: exact for any bf16/f16/f32 w, where a bf16 sum would round.
func shiftNorm(src []byte, dtype string) ([]byte, error) {
	elem, err := quant.ElemSize(dtype)
	if err != nil {
		return nil, err
	}
	f := make([]float32, len(src)/elem)
	if err := quant.DecodeFloats(dtype, src, f); err != nil {
		return nil, err
	}
	for i := range f {
		f[i] += 1
	}
	out := make([]byte, len(f)*4)
	return out, quant.EncodeFloats(format.DTypeF32, f, out)
}

func isFloat(dtype string) bool {
	return dtype == format.DTypeBF16 || dtype == format.DTypeF16 || dtype == format.DTypeF32
}

// sameElements reports whether two shapes hold the same elements in the same order, allowing
// unit axes (conv1d is [C,1,K] in HF and [C,K,1] in MLX; both are [C,K] bytes).
func sameElements(got, want []int) bool {
	strip := func(s []int) []int {
		var o []int
		for _, d := range s {
			if d != 1 {
				o = append(o, d)
			}
		}
		return o
	}
	return slices.Equal(strip(got), strip(want))
}

// checkQuantShape checks an MLX-quantised weight (and its scales/biases) against the logical
// [rows, cols] the config implies, with optional leading stacked-expert axes.
func checkQuantShape(name string, w, s, b *srcTensor, lead []int, rows, cols, bits, group int) error {
	wantW := append(slices.Clone(lead), rows, cols*bits/32)
	wantS := append(slices.Clone(lead), rows, cols/group)
	if w.dtype != format.DTypeU32 {
		return fmt.Errorf("tensor %s: quantised weight has dtype %s, want U32", w.orig, w.dtype)
	}
	if !slices.Equal(w.shape, wantW) {
		return fmt.Errorf("tensor %s has shape %v; %d-bit group-%d quantisation of %s [%d, %d] needs %v", w.orig, w.shape, bits, group, name, rows, cols, wantW)
	}
	for _, t := range []*srcTensor{s, b} {
		if t.dtype != format.DTypeBF16 {
			return fmt.Errorf("tensor %s has dtype %s, fmoe expects BF16 scales and biases", t.orig, t.dtype)
		}
		if !slices.Equal(t.shape, wantS) {
			return fmt.Errorf("tensor %s has shape %v, want %v", t.orig, t.shape, wantS)
		}
	}
	return nil
}
