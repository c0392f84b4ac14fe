// Package quant holds every number conversion the packer and runtime share:
// bf16/f16/f32 scalar and byte-slice codecs, MLX affine quantisation
// (bits 2, 4, 8; groups of 32, 64 or 128 with bf16 scale and bias per group)
// and the 2-bit requantisation rules for 4-bit experts.
//
// Everything here is bit-exact with the reference tooling: the MLX quantiser
// reproduces the Python rule that produced testdata/tiny/mlx-4bit byte for
// byte, and the float conversions match torch's round-to-nearest-even.
// Arithmetic is done in float32 with explicit conversions wherever Go would
// otherwise be allowed to fuse a multiply-add, because a fused operation
// rounds once instead of twice and breaks reproducibility.
//
// Packed layout: a row of cols values at b bits is cols*b/32 little-endian
// uint32 words; element j of a word occupies bits [b*j, b*j+b) (LSB first).
// Scales and biases are bf16 bit patterns, one per group, in row order.
// Dequantisation is w = float32(q)*scale + bias, rounded after the multiply.
package quant
