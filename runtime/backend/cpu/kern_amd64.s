//go:build amd64 && !purego

#include "textflag.h"

// func q4RowsAVX2(w, s, b *byte, groups int, xt, sx, y *float32, rows int)
//
// Per group of 64 columns (8 words, one vector): y += s·Σ(q−8)·x + (b+8s)·Σx.
// Centring q on 8 keeps s·Σ(q−8)x and (b+8s)·Σx from cancelling (MLX biases
// sit near −8s), so the result is as accurate as dequantise-then-dot; b+8s
// is exact in float32 (two bf16 values of similar magnitude).
//
// q−8 is nibble q of the word XOR 0x88888888 read as a signed 4-bit number:
// shift it to the top of the lane, then arithmetic-shift it back down.
//
// Registers: Y0 row accumulator, X15 bias accumulator, Y1 the group's
// words, Y2/Y3 two partial sums (two chains so FMA latency overlaps), Y4/Y5
// unpacked values, X6 bias, Y7 scale, Y8 0x88888888, X9 8.0.
TEXT ·q4RowsAVX2(SB), NOSPLIT, $0-64
	MOVQ w+0(FP), SI
	MOVQ s+8(FP), R8
	MOVQ b+16(FP), R9
	MOVQ groups+24(FP), CX
	MOVQ xt+32(FP), R11
	MOVQ sx+40(FP), R12
	MOVQ y+48(FP), DI
	MOVQ rows+56(FP), BX

	MOVL $0x88888888, AX
	VMOVD AX, X8
	VPBROADCASTD X8, Y8
	MOVL $0x41000000, AX // 8.0
	VMOVD AX, X9

rowloop:
	TESTQ BX, BX
	JZ    done
	VXORPS Y0, Y0, Y0
	VXORPS X15, X15, X15
	MOVQ R11, DX
	MOVQ R12, R10
	MOVQ CX, R13

grouploop:
	// Software prefetch: one thread's hardware prefetcher alone leaves the
	// stream latency-bound (measured +20-30% with it).
	PREFETCHT0 512(SI)
	VPXOR   (SI), Y8, Y1
	VPSLLD  $28, Y1, Y4
	VPSRAD  $28, Y4, Y4
	VCVTDQ2PS Y4, Y4
	VMULPS  (DX), Y4, Y2
	VPSLLD  $24, Y1, Y5
	VPSRAD  $28, Y5, Y5
	VCVTDQ2PS Y5, Y5
	VMULPS  32(DX), Y5, Y3
	VPSLLD  $20, Y1, Y4
	VPSRAD  $28, Y4, Y4
	VCVTDQ2PS Y4, Y4
	VFMADD231PS 64(DX), Y4, Y2
	VPSLLD  $16, Y1, Y5
	VPSRAD  $28, Y5, Y5
	VCVTDQ2PS Y5, Y5
	VFMADD231PS 96(DX), Y5, Y3
	VPSLLD  $12, Y1, Y4
	VPSRAD  $28, Y4, Y4
	VCVTDQ2PS Y4, Y4
	VFMADD231PS 128(DX), Y4, Y2
	VPSLLD  $8, Y1, Y5
	VPSRAD  $28, Y5, Y5
	VCVTDQ2PS Y5, Y5
	VFMADD231PS 160(DX), Y5, Y3
	VPSLLD  $4, Y1, Y4
	VPSRAD  $28, Y4, Y4
	VCVTDQ2PS Y4, Y4
	VFMADD231PS 192(DX), Y4, Y2
	VPSRAD  $28, Y1, Y5
	VCVTDQ2PS Y5, Y5
	VFMADD231PS 224(DX), Y5, Y3
	VADDPS  Y3, Y2, Y2

	// bf16 -> f32 is a 16-bit left shift.
	MOVWLZX (R8), AX
	SHLL    $16, AX
	VMOVD   AX, X7
	MOVWLZX (R9), AX
	SHLL    $16, AX
	VMOVD   AX, X6
	VFMADD231SS X9, X7, X6 // b + 8s
	VFMADD231SS (R10), X6, X15
	VBROADCASTSS X7, Y7
	VFMADD231PS Y2, Y7, Y0

	ADDQ $32, SI
	ADDQ $256, DX
	ADDQ $2, R8
	ADDQ $2, R9
	ADDQ $4, R10
	DECQ R13
	JNZ  grouploop

	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VADDSS X15, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	DECQ BX
	JMP  rowloop

done:
	VZEROUPPER
	RET
