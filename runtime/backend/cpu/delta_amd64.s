//go:build amd64 && !purego

#include "textflag.h"

// func combine4ASM(dst, m0, m1, m2, m3, c *float32, n int)
// dst[x] += c[0]*m0[x] + c[1]*m1[x] + c[2]*m2[x] + c[3]*m3[x], n a multiple of 8.
TEXT ·combine4ASM(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ m0+8(FP), R8
	MOVQ m1+16(FP), R9
	MOVQ m2+24(FP), R10
	MOVQ m3+32(FP), R11
	MOVQ c+40(FP), AX
	MOVQ n+48(FP), CX
	VBROADCASTSS 0(AX), Y0
	VBROADCASTSS 4(AX), Y1
	VBROADCASTSS 8(AX), Y2
	VBROADCASTSS 12(AX), Y3
	XORQ BX, BX

loop:
	CMPQ BX, CX
	JGE  done
	VMOVUPS     (DI)(BX*4), Y4
	VFMADD231PS (R8)(BX*4), Y0, Y4
	VFMADD231PS (R9)(BX*4), Y1, Y4
	VFMADD231PS (R10)(BX*4), Y2, Y4
	VFMADD231PS (R11)(BX*4), Y3, Y4
	VMOVUPS     Y4, (DI)(BX*4)
	ADDQ        $8, BX
	JMP         loop

done:
	VZEROUPPER
	RET
