#include "textflag.h"

// CPL0 gates for a plain PVH boot (unmap.go): the only way the kernel,
// which runs at CPL3, can flush the TLB or read CR2 there. Each entry is
// reached through an interrupt gate (IF clear) on gateStack and returns
// to CPL3 with IRETQ. The callers pass and get values in AX. The return
// always loads SS 0x2b: a caller running on an IST stack (the #PF
// handler) has the null SS such a delivery loads, and IRETQ to CPL3 with
// a null SS is #GP (trapCommon does the same).

// func gateFlush()
TEXT ·gateFlush(SB),NOSPLIT,$0-0
	INT	$0xf0
	RET

// func gateInvlpg(va uintptr)
TEXT ·gateInvlpg(SB),NOSPLIT,$0-8
	MOVQ	va+0(FP), AX
	INT	$0xf1
	RET

// func gateCR2() uintptr
TEXT ·gateCR2(SB),NOSPLIT,$0-8
	INT	$0xf2
	MOVQ	AX, ret+0(FP)
	RET

TEXT ·gateFlushEntry(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	MOVQ	CR3, AX
	MOVQ	AX, CR3
	POPQ	AX
	MOVQ	$0x2b, 32(SP)
	IRETQ

TEXT ·gateInvlpgEntry(SB),NOSPLIT|NOFRAME,$0
	INVLPG	(AX)
	MOVQ	$0x2b, 32(SP)
	IRETQ

TEXT ·gateCR2Entry(SB),NOSPLIT|NOFRAME,$0
	MOVQ	CR2, AX
	MOVQ	$0x2b, 32(SP)
	IRETQ

// func gatePCs() (flush, invlpg, cr2 uintptr)
TEXT ·gatePCs(SB),NOSPLIT,$0-24
	LEAQ	·gateFlushEntry(SB), AX
	MOVQ	AX, flush+0(FP)
	LEAQ	·gateInvlpgEntry(SB), AX
	MOVQ	AX, invlpg+8(FP)
	LEAQ	·gateCR2Entry(SB), AX
	MOVQ	AX, cr2+16(FP)
	RET
