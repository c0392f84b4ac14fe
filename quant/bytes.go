package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Safetensors dtype names handled by DecodeFloats and EncodeFloats.
const (
	DTypeBF16 = "BF16"
	DTypeF16  = "F16"
	DTypeF32  = "F32"
)

// ElemSize returns the width in bytes of one element of a float dtype.
func ElemSize(dtype string) (int, error) {
	switch dtype {
	case DTypeBF16, DTypeF16:
		return 2, nil
	case DTypeF32:
		return 4, nil
	}
	return 0, fmt.Errorf("quant: unsupported float dtype %q (want BF16, F16 or F32)", dtype)
}

func checkBytes(what string, nbytes, n, size int) error {
	if nbytes != n*size {
		return fmt.Errorf("quant: %s: %d bytes for %d elements of %d bytes", what, nbytes, n, size)
	}
	return nil
}

// DecodeFloats converts little-endian elements of dtype (as stored in
// safetensors) into dst; len(src) must be exactly len(dst) elements.
func DecodeFloats(dtype string, src []byte, dst []float32) error {
	size, err := ElemSize(dtype)
	if err != nil {
		return err
	}
	if err := checkBytes("decode "+dtype, len(src), len(dst), size); err != nil {
		return err
	}
	switch dtype {
	case DTypeBF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case DTypeF16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case DTypeF32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}
	return nil
}

// EncodeFloats converts src to little-endian elements of dtype, rounding to
// nearest even for the 16-bit formats; len(dst) must be exactly len(src)
// elements.
func EncodeFloats(dtype string, src []float32, dst []byte) error {
	size, err := ElemSize(dtype)
	if err != nil {
		return err
	}
	if err := checkBytes("encode "+dtype, len(dst), len(src), size); err != nil {
		return err
	}
	switch dtype {
	case DTypeBF16:
		for i, f := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(f))
		}
	case DTypeF16:
		for i, f := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(f))
		}
	case DTypeF32:
		for i, f := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
		}
	}
	return nil
}

// DecodeUint16s reads little-endian uint16s (bf16 scales and biases as
// stored) into dst; len(src) must be exactly 2*len(dst).
func DecodeUint16s(src []byte, dst []uint16) error {
	if err := checkBytes("decode uint16", len(src), len(dst), 2); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = binary.LittleEndian.Uint16(src[2*i:])
	}
	return nil
}

// EncodeUint16s writes src as little-endian uint16s; len(dst) must be
// exactly 2*len(src).
func EncodeUint16s(src []uint16, dst []byte) error {
	if err := checkBytes("encode uint16", len(dst), len(src), 2); err != nil {
		return err
	}
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], v)
	}
	return nil
}

// DecodeUint32s reads little-endian uint32s (packed weights, safetensors
// dtype U32) into dst; len(src) must be exactly 4*len(dst).
func DecodeUint32s(src []byte, dst []uint32) error {
	if err := checkBytes("decode uint32", len(src), len(dst), 4); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = binary.LittleEndian.Uint32(src[4*i:])
	}
	return nil
}

// EncodeUint32s writes src as little-endian uint32s; len(dst) must be
// exactly 4*len(src).
func EncodeUint32s(src []uint32, dst []byte) error {
	if err := checkBytes("encode uint32", len(dst), len(src), 4); err != nil {
		return err
	}
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], v)
	}
	return nil
}
