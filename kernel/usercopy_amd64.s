// The kernel's user-copy routines: every access a system call makes to
// memory the program named goes through ucopy or uclear (uaccess.go says
// which checks come first). They are the kernel's exception table: a #PF
// or #GP raised at an instruction in [ucopy, uaccessFault) while a system
// call runs on the thread's kernel stack is not a kernel bug but a bad
// user address the checks missed, and trap (trap.go) resumes the routine
// at uaccessFault, which returns the number of bytes left uncopied, as
// Linux's copy_to_user does.
//
// The fixup works because of the shape these routines share, which must
// be kept:
//   - the frame is $0 with 32 bytes of arguments (NOFRAME: nothing is
//     pushed), so at any instruction SP is what it was on entry and
//     uaccessFault, with the same frame, finds the result slot and the
//     return address where the faulting routine would;
//   - CX always holds the bytes not yet copied: it is lowered only after
//     the stores it accounts for (a fault inside a 32-byte block leaves
//     CX counting that whole block, so a partial count errs low);
//   - ucopy, uclear and uaccessFault stay in this order, in this file,
//     followed by uaccessEnd: the linker keeps a file's functions in
//     source order, kinit checks it (uaccessCheck) and so does
//     TestKernelCoreIsRuntimeFree on a real image.

#include "textflag.h"

// func ucopy(dst, src unsafe.Pointer, n uintptr) (left uintptr)
TEXT ·ucopy(SB),NOSPLIT|NOFRAME,$0-32
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), CX
copy32:
	CMPQ	CX, $32
	JB	copy8
	MOVQ	0(SI), AX
	MOVQ	8(SI), DX
	MOVQ	16(SI), R8
	MOVQ	24(SI), R9
	MOVQ	AX, 0(DI)
	MOVQ	DX, 8(DI)
	MOVQ	R8, 16(DI)
	MOVQ	R9, 24(DI)
	ADDQ	$32, SI
	ADDQ	$32, DI
	SUBQ	$32, CX
	JMP	copy32
copy8:
	CMPQ	CX, $8
	JB	copy1
	MOVQ	0(SI), AX
	MOVQ	AX, 0(DI)
	ADDQ	$8, SI
	ADDQ	$8, DI
	SUBQ	$8, CX
	JMP	copy8
copy1:
	TESTQ	CX, CX
	JEQ	copied
	MOVB	0(SI), AX
	MOVB	AX, 0(DI)
	INCQ	SI
	INCQ	DI
	DECQ	CX
	JMP	copy1
copied:
	MOVQ	CX, left+24(FP)
	RET

// func uclear(dst, unused unsafe.Pointer, n uintptr) (left uintptr)
// The unused argument gives it ucopy's frame (see the top of the file).
TEXT ·uclear(SB),NOSPLIT|NOFRAME,$0-32
	MOVQ	dst+0(FP), DI
	MOVQ	n+16(FP), CX
	XORQ	AX, AX
clear32:
	CMPQ	CX, $32
	JB	clear8
	MOVQ	AX, 0(DI)
	MOVQ	AX, 8(DI)
	MOVQ	AX, 16(DI)
	MOVQ	AX, 24(DI)
	ADDQ	$32, DI
	SUBQ	$32, CX
	JMP	clear32
clear8:
	CMPQ	CX, $8
	JB	clear1
	MOVQ	AX, 0(DI)
	ADDQ	$8, DI
	SUBQ	$8, CX
	JMP	clear8
clear1:
	TESTQ	CX, CX
	JEQ	cleared
	MOVB	AX, 0(DI)
	INCQ	DI
	DECQ	CX
	JMP	clear1
cleared:
	MOVQ	CX, left+24(FP)
	RET

// uaccessFault is where trap resumes a faulting ucopy or uclear, on that
// routine's frame and with its registers: it returns CX, the bytes left.
// Nothing calls it.
//
// func uaccessFault(dst, src unsafe.Pointer, n uintptr) (left uintptr)
TEXT ·uaccessFault(SB),NOSPLIT|NOFRAME,$0-32
	MOVQ	CX, left+24(FP)
	RET

// uaccessEnd only marks the end of the routines above.
TEXT ·uaccessEnd(SB),NOSPLIT|NOFRAME,$0-0
	RET

// func uaccessPCs() (cp, cl, fault, end uintptr)
TEXT ·uaccessPCs(SB),NOSPLIT,$0-32
	LEAQ	·ucopy(SB), AX
	MOVQ	AX, cp+0(FP)
	LEAQ	·uclear(SB), AX
	MOVQ	AX, cl+8(FP)
	LEAQ	·uaccessFault(SB), AX
	MOVQ	AX, fault+16(FP)
	LEAQ	·uaccessEnd(SB), AX
	MOVQ	AX, end+24(FP)
	RET
