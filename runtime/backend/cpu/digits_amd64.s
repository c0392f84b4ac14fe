// Hand-written (not by asmgen.py): the 4-bit matvec on AVX-512 VNNI, x as
// integer digits. The layouts and the error bound are in digits_amd64.go.

//go:build amd64 && !purego

#include "textflag.h"

// digitsWidx: VPERMW's index putting the block's first bf16 scale in the
// upper half of dwords 0-7 and its second in those of dwords 8-15 (the
// lower halves are zeroed by the mask): the two scales as float32.
DATA digitsWidx<>+0(SB)/4, $0x00000000
DATA digitsWidx<>+4(SB)/4, $0x00000000
DATA digitsWidx<>+8(SB)/4, $0x00000000
DATA digitsWidx<>+12(SB)/4, $0x00000000
DATA digitsWidx<>+16(SB)/4, $0x00000000
DATA digitsWidx<>+20(SB)/4, $0x00000000
DATA digitsWidx<>+24(SB)/4, $0x00000000
DATA digitsWidx<>+28(SB)/4, $0x00000000
DATA digitsWidx<>+32(SB)/4, $0x00010000
DATA digitsWidx<>+36(SB)/4, $0x00010000
DATA digitsWidx<>+40(SB)/4, $0x00010000
DATA digitsWidx<>+44(SB)/4, $0x00010000
DATA digitsWidx<>+48(SB)/4, $0x00010000
DATA digitsWidx<>+52(SB)/4, $0x00010000
DATA digitsWidx<>+56(SB)/4, $0x00010000
DATA digitsWidx<>+60(SB)/4, $0x00010000
GLOBL digitsWidx<>(SB), RODATA|NOPTR, $64
// digitsTail: the low n of 16 bits, n = 0..15 (the bias pass's last groups).
DATA digitsTail<>+0(SB)/2, $0x0000
DATA digitsTail<>+2(SB)/2, $0x0001
DATA digitsTail<>+4(SB)/2, $0x0003
DATA digitsTail<>+6(SB)/2, $0x0007
DATA digitsTail<>+8(SB)/2, $0x000f
DATA digitsTail<>+10(SB)/2, $0x001f
DATA digitsTail<>+12(SB)/2, $0x003f
DATA digitsTail<>+14(SB)/2, $0x007f
DATA digitsTail<>+16(SB)/2, $0x00ff
DATA digitsTail<>+18(SB)/2, $0x01ff
DATA digitsTail<>+20(SB)/2, $0x03ff
DATA digitsTail<>+22(SB)/2, $0x07ff
DATA digitsTail<>+24(SB)/2, $0x0fff
DATA digitsTail<>+26(SB)/2, $0x1fff
DATA digitsTail<>+28(SB)/2, $0x3fff
DATA digitsTail<>+30(SB)/2, $0x7fff
GLOBL digitsTail<>(SB), RODATA|NOPTR, $32

// func q4DigitsVNNI(w, s, b *byte, groups int, xd *byte, sx, y *float32, rows int)
//
// groups even. Z15: 0x0f in every byte; Z14: 8.0; K1: the odd words; K2:
// the bias pass's tail; AX: its bytes of bf16. Per row: SI its weights, R8
// its scales (R14 again in the bias pass), R9 its biases, DX x's staging,
// R15 the group sums; Z0 the row's sum.
TEXT ·q4DigitsVNNI(SB), NOSPLIT, $0-64
	MOVQ w+0(FP), SI
	MOVQ s+8(FP), R8
	MOVQ b+16(FP), R9
	MOVQ groups+24(FP), CX
	MOVQ xd+32(FP), R11
	MOVQ sx+40(FP), R12
	MOVQ y+48(FP), DI
	MOVQ rows+56(FP), BX
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z15
	MOVL $0x41000000, AX // 8.0
	VPBROADCASTD AX, Z14
	VMOVDQU32 digitsWidx<>(SB), Z11
	MOVL $0xaaaaaaaa, AX
	KMOVD AX, K1
	MOVQ CX, AX
	ANDQ $15, AX
	LEAQ digitsTail<>(SB), R13
	KMOVW (R13)(AX*2), K2
	SHLQ $1, AX

rowloop:
	TESTQ BX, BX
	JZ    done
	VXORPS Z0, Z0, Z0
	MOVQ R11, DX
	MOVQ R12, R15
	MOVQ R8, R14
	MOVQ CX, R13
	SHRQ $1, R13

blockloop:
	PREFETCHT0 2048(SI)
	VMOVDQU32 (SI), Z1
	VPSRLW $4, Z1, Z2
	VPANDD Z15, Z1, Z1
	VPANDD Z15, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPDPBUSD 0(DX), Z1, Z3
	VPDPBUSD 64(DX), Z1, Z4
	VPDPBUSD 128(DX), Z1, Z5
	VPDPBUSD 192(DX), Z2, Z3
	VPDPBUSD 256(DX), Z2, Z4
	VPDPBUSD 320(DX), Z2, Z5
	// Σq·n = Σq·d0 + 2^8·Σq·d1 + 2^16·Σq·d2, less 8·Σn: exact in int32.
	VPSLLD $8, Z5, Z5
	VPADDD Z4, Z5, Z5
	VPSLLD $8, Z5, Z5
	VPADDD Z3, Z5, Z5
	VPSUBD 448(DX), Z5, Z5
	VCVTDQ2PS Z5, Z5
	// The two groups' scales times their factors 2^(E-22).
	VPBROADCASTD (R8), Z7
	VPERMW.Z Z7, Z11, K1, Z7
	VMULPS 384(DX), Z7, Z7
	VFMADD231PS Z5, Z7, Z0
	ADDQ $64, SI
	ADDQ $512, DX
	ADDQ $4, R8
	DECQ R13
	JNZ  blockloop

	// Bias pass: Σ_g (b+8s)·Σx, 16 groups a vector, into Z0.
	MOVQ CX, R13
	SHRQ $4, R13
	JZ   biastail

bias16:
	VPMOVZXWD (R14), Z6
	VPSLLD $16, Z6, Z6
	VPMOVZXWD (R9), Z7
	VPSLLD $16, Z7, Z7
	VFMADD231PS Z14, Z6, Z7
	VFMADD231PS (R15), Z7, Z0
	ADDQ $32, R14
	ADDQ $32, R9
	ADDQ $64, R15
	DECQ R13
	JNZ  bias16

biastail:
	TESTQ AX, AX
	JZ    reduce
	VPMOVZXWD.Z (R14), K2, Z6
	VPSLLD $16, Z6, Z6
	VPMOVZXWD.Z (R9), K2, Z7
	VPSLLD $16, Z7, Z7
	VFMADD231PS Z14, Z6, Z7
	VMOVUPS.Z (R15), K2, Z5
	VFMADD231PS Z5, Z7, Z0
	ADDQ AX, R9

reduce:
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	DECQ BX
	JMP  rowloop

done:
	VZEROUPPER
	RET
