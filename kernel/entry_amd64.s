// The kernel's entry points: the first instruction of the guest, the
// system-call entry that the rewritten runtime CALLs instead of executing
// SYSCALL, the trap entry behind every IDT vector, and the context switch.
// Everything here runs at CPL3 and uses only plain instructions.

#include "textflag.h"

// Per-CPU block, reached through GS (Go never uses GS). See percpu in cpu.go.
#define CPU_KSTACK 0
#define CPU_INTICK 8
#define LAPIC_EOI 0xfee000b0

// sysFrame layout (frame.go).
#define F_RAX 0
#define F_RBX 8
#define F_RCX 16
#define F_RDX 24
#define F_RSI 32
#define F_RDI 40
#define F_RBP 48
#define F_R8 56
#define F_R9 64
#define F_R10 72
#define F_R11 80
#define F_R12 88
#define F_R13 96
#define F_R14 104
#define F_R15 112
#define F_RIP 120
#define F_RSP 128
#define F_RFLAGS 136
#define F_XRSTOR 144
#define FRAME_SIZE 160
// Room for an XSAVE image of every state component this CPU may enable
// (xsaveSize, from CPUID leaf 0xD, is checked against it at boot).
#define XSAVE_ROOM 4096
#define KSTACKS_SIZE (128*32768) // maxThreads*kstackSize (sched.go)
#define NSYS 512 // nsys in syscall.go

// start is the image's ELF entry. Both boot paths arrive here at CPL3 with
// RBX = physical address of hvm_start_info and RSP on the boot stack.
TEXT ·start(SB),NOSPLIT|NOFRAME,$0
	// The ABI wrappers around Go functions load g from -8(FS): point FS at
	// a zero word so that load is harmless before the runtime sets its TLS.
	LEAQ	·bootTLS+8(SB), AX
	WRFSBASEQ	AX
	LEAQ	·cpu0(SB), AX
	WRGSBASEQ	AX
	ANDQ	$~15, SP
	SUBQ	$16, SP
	MOVQ	BX, 0(SP)
	CALL	·kinit(SB)
	MOVQ	8(SP), SP	// the process stack kinit built: argc, argv, envp, auxv
	XORQ	DX, DX		// no atexit function
	JMP	_rt0_amd64_linux(SB)

// syscallEntry replaces every SYSCALL instruction of the runtime. It keeps
// SYSCALL's contract exactly: return RIP in RCX, RCX and R11 clobbered, the
// caller's stack untouched (so clone, rt_sigreturn and vfork work).
//
// The return address stays in memory below the caller's SP (nothing of
// the kernel runs on that stack): returning through it with RET, rather
// than JMP CX, keeps the CPU's return-stack predictor in step, which
// otherwise mispredicts every return of the caller afterwards.
TEXT ·syscallEntry(SB),NOSPLIT|NOFRAME,$0
	MOVQ	0(SP), CX
	ADDQ	$8, SP
	JMP	syscallSave<>(SB)

// lstarEntry is where a stray SYSCALL lands on shadow-paging hosts: still at
// CPL3, RCX = return RIP, R11 = RFLAGS, RSP unchanged.
TEXT ·lstarEntry(SB),NOSPLIT|NOFRAME,$0
	JMP	syscallSave<>(SB)

// The caller's SP travels in R11 (which SYSCALL clobbers anyway), not in
// a per-CPU slot: a thread preempted here must not find another thread's
// value there when it continues.
TEXT syscallSave<>(SB),NOSPLIT|NOFRAME,$0
	MOVQ	SP, R11
	MOVQ	CPU_KSTACK(GS), SP
	SUBQ	$FRAME_SIZE, SP
	MOVQ	AX, F_RAX(SP)
	MOVQ	BX, F_RBX(SP)
	MOVQ	DX, F_RDX(SP)
	MOVQ	SI, F_RSI(SP)
	MOVQ	DI, F_RDI(SP)
	MOVQ	BP, F_RBP(SP)
	MOVQ	R8, F_R8(SP)
	MOVQ	R9, F_R9(SP)
	MOVQ	R10, F_R10(SP)
	MOVQ	R11, F_R11(SP)
	MOVQ	R12, F_R12(SP)
	MOVQ	R13, F_R13(SP)
	MOVQ	R14, F_R14(SP)
	MOVQ	R15, F_R15(SP)
	MOVQ	CX, F_RIP(SP)
	MOVQ	R11, F_RSP(SP)
	MOVQ	$0, F_XRSTOR(SP)
	JMP	syscallBody<>(SB)

// syscallBody runs the system call whose frame is at SP and returns to the
// context the frame then holds.
//
// The fast path calls the handler in sysTable directly with Go's internal
// register ABI (argument and result in AX, closure context in DX, g in
// R14, X15 zero), saving the ABI wrapper and a call level; anything else
// goes through dispatch. The calls are indirect on purpose: the linker's
// nosplit check would otherwise add the kernel's frames to those of every
// runtime function that makes a system call, though they run on the kernel
// stack.
TEXT syscallBody<>(SB),NOSPLIT|NOFRAME,$0
	MOVQ	F_RAX(SP), AX
	CMPQ	AX, $NSYS
	JAE	slow
	MOVQ	$·sysTable(SB), BX
	MOVQ	(BX)(AX*8), DX
	TESTQ	DX, DX
	JEQ	slow
	MOVQ	SP, AX
	MOVQ	(TLS), R14
	XORPS	X15, X15
	CALL	(DX)
	MOVQ	AX, F_RAX(SP)
	MOVQ	SP, R11
	CMPL	·sigWork(SB), $0
	JNE	2(PC)
	JMP	syscallReturn<>(SB)
	JMP	work<>(SB)
slow:
	MOVQ	SP, AX
	SUBQ	$8, SP
	MOVQ	AX, 0(SP)
	MOVQ	$·dispatch(SB), AX
	CALL	AX
	ADDQ	$8, SP
	MOVQ	SP, R11
	JMP	syscallReturn<>(SB)

// syscallReturn returns to the context held by the frame at R11.
//
// The timer's gate has no IST (see timerEntry), so an interrupt may come
// between any two instructions here and pushes its frame just below SP,
// on whatever stack SP is on. Two rules follow, and every exit path keeps
// them:
//   - SP is never raised above live data: the caller leaves SP at or below
//     the frame and below a preempted thread's XSAVE image, which lies
//     between the two (preemptTo), and the frame is reached through R11;
//   - SP moves to the user stack in the same instruction that makes the
//     return address part of the stack (LEAQ -8(R11), SP; RET), never
//     before: a return address left below the user SP would be overwritten
//     by the interrupt frame (its SS word, 0x2b, became the return address).
TEXT syscallReturn<>(SB),NOSPLIT|NOFRAME,$0
	// BP is restored from the frame below; reading it first tells vet's
	// frame-pointer check that this frameless code does so on purpose.
	MOVQ	BP, AX
	MOVQ	F_XRSTOR(R11), AX
	TESTQ	AX, AX
	JNE	full
	MOVQ	F_RBX(R11), BX
	MOVQ	F_RDX(R11), DX
	MOVQ	F_RSI(R11), SI
	MOVQ	F_RDI(R11), DI
	MOVQ	F_RBP(R11), BP
	MOVQ	F_R8(R11), R8
	MOVQ	F_R9(R11), R9
	MOVQ	F_R10(R11), R10
	MOVQ	F_R12(R11), R12
	MOVQ	F_R13(R11), R13
	MOVQ	F_R14(R11), R14
	MOVQ	F_R15(R11), R15
	MOVQ	F_RIP(R11), CX
	MOVQ	F_RAX(R11), AX
	// R11 is clobbered by SYSCALL's contract: it carries the user SP.
	MOVQ	F_RSP(R11), R11
	// Return with RET when the return address is still where the entry
	// left it (the usual case); otherwise the frame holds a new context
	// (a new thread, a signal handler) or came from a trap: jump to it.
	// Both end in the same state (RIP = CX, SP = the frame's RSP).
	CMPQ	CX, -8(R11)
	JNE	jump
	LEAQ	-8(R11), SP
	RET
jump:
	MOVQ	R11, SP
	JMP	CX
full:
	// A complete context (rt_sigreturn, signal delivery, a preempted
	// thread): restore the vector state and RFLAGS too, and return with
	// IRETQ, which is native between CPL3 contexts with Linux's selectors.
	// The XSAVE image is consumed before the pushes below SP.
	MOVL	$-1, AX
	MOVL	$-1, DX
	MOVQ	F_XRSTOR(R11), CX
	XRSTOR64	(CX)
	PUSHQ	$0x2b
	PUSHQ	F_RSP(R11)
	PUSHQ	F_RFLAGS(R11)
	PUSHQ	$0x33
	PUSHQ	F_RIP(R11)
	MOVQ	F_RAX(R11), AX
	MOVQ	F_RBX(R11), BX
	MOVQ	F_RCX(R11), CX
	MOVQ	F_RDX(R11), DX
	MOVQ	F_RSI(R11), SI
	MOVQ	F_RDI(R11), DI
	MOVQ	F_RBP(R11), BP
	MOVQ	F_R8(R11), R8
	MOVQ	F_R9(R11), R9
	MOVQ	F_R10(R11), R10
	MOVQ	F_R12(R11), R12
	MOVQ	F_R13(R11), R13
	MOVQ	F_R14(R11), R14
	MOVQ	F_R15(R11), R15
	MOVQ	F_R11(R11), R11
	IRETQ

// forkRet is where a new thread first runs: swtch "returns" here on the
// thread's kernel stack, whose top holds the frame clone prepared.
// A preempted thread continues here too, from the complete context the
// timer interrupt saved in that frame; its XSAVE image lies between SP
// and the frame, so SP stays where it is (syscallReturn).
TEXT ·forkRet(SB),NOSPLIT|NOFRAME,$0
	MOVQ	CPU_KSTACK(GS), R11
	SUBQ	$FRAME_SIZE, R11
	CMPL	·sigWork(SB), $0
	JEQ	2(PC)
	JMP	work<>(SB)
	JMP	syscallReturn<>(SB)

// work runs syscallExitWork on the frame at R11, then returns to it. SP is
// below the frame and below any XSAVE image the frame points to on this
// stack, so the call runs where nothing is live.
TEXT work<>(SB),NOSPLIT|NOFRAME,$0
	SUBQ	$16, SP
	MOVQ	R11, 0(SP)
	MOVQ	R11, 8(SP)
	MOVQ	$·syscallExitWork(SB), AX
	CALL	AX
	MOVQ	8(SP), R11
	ADDQ	$16, SP
	JMP	syscallReturn<>(SB)

// timerEntry is the timer's IDT entry. Its gate has no IST, so the CPU
// pushed the 5-word interrupt frame on the interrupted stack. On a kernel
// stack that is where the handler runs (interrupts nest like calls); on a
// user stack (56 bytes used there, within the headroom Go's stack checks
// keep) it moves the frame to the running thread's kernel stack, below the
// room preemptTo needs at its top, and runs there.
TEXT ·timerEntry(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	PUSHQ	BX
	// 0(SP) BX, 8 AX, 16 RIP, 24 CS, 32 RFLAGS, 40 RSP, 48 SS
	CMPQ	CPU_INTICK(GS), $0
	JNE	nested
	MOVQ	$1, CPU_INTICK(GS)
	MOVQ	40(SP), AX
	MOVQ	$·kstacks(SB), BX
	CMPQ	AX, BX
	JCS	notkstack
	ADDQ	$KSTACKS_SIZE, BX
	CMPQ	AX, BX
	JCS	onkernel
notkstack:
	CMPQ	AX, $0x40000	// boot.ISTPA .. boot.BootStackTop
	JCS	onuser
	CMPQ	AX, $0x80000
	JCS	onkernel
onuser:
	MOVQ	CPU_KSTACK(GS), BX
	SUBQ	$(FRAME_SIZE+XSAVE_ROOM+64+40), BX
	MOVQ	16(SP), AX
	MOVQ	AX, 0(BX)
	MOVQ	24(SP), AX
	MOVQ	AX, 8(BX)
	MOVQ	32(SP), AX
	MOVQ	AX, 16(BX)
	MOVQ	40(SP), AX
	MOVQ	AX, 24(BX)
	MOVQ	48(SP), AX
	MOVQ	AX, 32(BX)
	MOVQ	8(SP), AX
	XCHGQ	BX, SP
	MOVQ	0(BX), BX
	PUSHQ	$0
	PUSHQ	$32
	JMP	·trapCommon(SB)
onkernel:
	POPQ	BX
	POPQ	AX
	PUSHQ	$0
	PUSHQ	$32
	JMP	·trapCommon(SB)
nested:
	// The previous tick is still being served: it acknowledged its
	// interrupt and this one came before its IRETQ (the host ran the
	// vCPU late, past the next period). Acknowledge this one and return
	// at once, on 56 bytes of stack: the running handler does the tick's
	// work. Without this, a slow enough host made every tick nest in the
	// one before, 4.6 KiB deeper each, until the kernel stack overflowed
	// into another thread's.
	MOVQ	$LAPIC_EOI, AX
	MOVL	$0, (AX)
	POPQ	BX
	POPQ	AX
	MOVQ	$0x2b, 32(SP)
	IRETQ

// func timerEntryPC() uintptr
TEXT ·timerEntryPC(SB),NOSPLIT,$0-8
	LEAQ	·timerEntry(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func jumpTo(ksp uintptr)
// Continues the thread whose kernel stack pointer is ksp, abandoning the
// current stack (a preempting interrupt's).
TEXT ·jumpTo(SB),NOSPLIT|NOFRAME,$0-8
	MOVQ	BP, AX	// (a read of BP first: see syscallReturn)
	MOVQ	ksp+0(FP), SP
	MOVQ	0(SP), BP	// the frame swtch would pop
	ADDQ	$8, SP
	RET

// func markCall(id uint64)
// kernel.Mark's system call (amber_mark), so the hypercall block is only
// ever used from the kernel.
TEXT ·markCall(SB),NOSPLIT,$0-8
	MOVQ	id+0(FP), DI
	MOVQ	$500, AX
	CALL	·syscallEntry(SB)
	RET

// func forkRetPC() uintptr
TEXT ·forkRetPC(SB),NOSPLIT,$0-8
	LEAQ	·forkRet(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func lstarEntryPC() uintptr
TEXT ·lstarEntryPC(SB),NOSPLIT,$0-8
	LEAQ	·lstarEntry(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func swtch(save *uintptr, next uintptr)
// Saves the kernel stack pointer of the running thread in *save and
// continues the thread whose kernel stack pointer is next. Go code assumes
// every register but SP and BP is clobbered by a call, so those are all
// there is to save.
TEXT ·swtch(SB),NOSPLIT,$0-16
	MOVQ	save+0(FP), AX
	MOVQ	next+8(FP), BX
	PUSHQ	BP
	MOVQ	SP, 0(AX)
	MOVQ	BX, SP
	POPQ	BP
	RET

// trapCommon: the stub pushed the vector and an error code; the CPU pushed
// SS, RSP, RFLAGS, CS, RIP. Build a boot.TrapFrame below them and save the
// vector registers (the kernel's Go code uses them, and a signal handler
// must see the interrupted state) before calling trap.
TEXT ·trapCommon(SB),NOSPLIT|NOFRAME,$0
	SUBQ	$120, SP
	MOVQ	R15, 0(SP)
	MOVQ	R14, 8(SP)
	MOVQ	R13, 16(SP)
	MOVQ	R12, 24(SP)
	MOVQ	R11, 32(SP)
	MOVQ	R10, 40(SP)
	MOVQ	R9, 48(SP)
	MOVQ	R8, 56(SP)
	MOVQ	BP, 64(SP)
	MOVQ	DI, 72(SP)
	MOVQ	SI, 80(SP)
	MOVQ	DX, 88(SP)
	MOVQ	CX, 96(SP)
	MOVQ	BX, 104(SP)
	MOVQ	AX, 112(SP)
	MOVQ	SP, BX
	SUBQ	$XSAVE_ROOM, SP
	ANDQ	$~63, SP
	MOVQ	SP, R12
	// XSAVE leaves most of the 64-byte XSAVE header alone, and XRSTOR
	// faults if its reserved bytes are not zero: clear them first (on a
	// kernel stack the area holds stale data).
	XORQ	AX, AX
	MOVQ	AX, 512(R12)
	MOVQ	AX, 520(R12)
	MOVQ	AX, 528(R12)
	MOVQ	AX, 536(R12)
	MOVQ	AX, 544(R12)
	MOVQ	AX, 552(R12)
	MOVQ	AX, 560(R12)
	MOVQ	AX, 568(R12)
	MOVL	$-1, AX
	MOVL	$-1, DX
	XSAVE64	(R12)
	SUBQ	$32, SP
	MOVQ	BX, 0(SP)
	MOVQ	R12, 8(SP)
	MOVQ	BX, 24(SP)
	MOVQ	$·trap(SB), AX	// indirect: trap's frames are checked on their own
	CALL	AX
	MOVQ	16(SP), R13
	MOVQ	8(SP), R12
	MOVQ	24(SP), BX
	MOVL	$-1, AX
	MOVL	$-1, DX
	XRSTOR64	(R12)
	MOVQ	BX, SP
	TESTQ	R13, R13
	JNE	tosyscall
	MOVQ	0(SP), R15
	MOVQ	8(SP), R14
	MOVQ	16(SP), R13
	MOVQ	24(SP), R12
	MOVQ	32(SP), R11
	MOVQ	40(SP), R10
	MOVQ	48(SP), R9
	MOVQ	56(SP), R8
	MOVQ	64(SP), BP
	MOVQ	72(SP), DI
	MOVQ	80(SP), SI
	MOVQ	88(SP), DX
	MOVQ	96(SP), CX
	MOVQ	104(SP), BX
	MOVQ	112(SP), AX
	// The timer's tick is served: from here on a tick is a new one
	// (timerEntry). Cleared at the last moment, so a tick can nest a full
	// handler only in these few instructions.
	CMPQ	120(SP), $32
	JNE	2(PC)
	MOVQ	$0, CPU_INTICK(GS)
	ADDQ	$136, SP	// registers, vector, error code
	// Every context of the guest runs on the flat user data selector. A
	// delivery through an IST stack loads SS with the null selector (RPL
	// 3), and an interrupt nested in that handler saves it: IRETQ to CPL3
	// with a null SS raises #GP (QEMU does this architecturally).
	MOVQ	$0x2b, 32(SP)
	IRETQ
tosyscall:
	// The trap was a SYSCALL instruction (#UD with EFER.SCE clear): trap
	// copied it into a system-call frame on the thread's kernel stack.
	MOVQ	R13, SP
	JMP	syscallBody<>(SB)

// func xsave(area uintptr)
TEXT ·xsave(SB),NOSPLIT,$0-8
	MOVQ	area+0(FP), CX
	XORQ	AX, AX
	MOVQ	AX, 512(CX)
	MOVQ	AX, 520(CX)
	MOVQ	AX, 528(CX)
	MOVQ	AX, 536(CX)
	MOVQ	AX, 544(CX)
	MOVQ	AX, 552(CX)
	MOVQ	AX, 560(CX)
	MOVQ	AX, 568(CX)
	MOVL	$-1, AX
	MOVL	$-1, DX
	XSAVE64	(CX)
	RET

// func hypercall(block uintptr)
TEXT ·hypercall(SB),NOSPLIT,$0-8
	MOVQ	block+0(FP), AX
	MOVL	$0x510, DX
	OUTL
	RET

// func rdtsc() uint64
TEXT ·rdtsc(SB),NOSPLIT,$0-8
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	MOVQ	AX, ret+0(FP)
	RET

// func rdrand() (v uint64, ok bool)
TEXT ·rdrand(SB),NOSPLIT,$0-9
	RDRANDQ	AX
	SETCS	BL
	MOVQ	AX, v+0(FP)
	MOVB	BL, ok+8(FP)
	RET

// func wrfsbase(v uintptr)
TEXT ·wrfsbase(SB),NOSPLIT,$0-8
	MOVQ	v+0(FP), AX
	WRFSBASEQ	AX
	RET

// func cpuid(leaf, sub uint32) (a, b, c, d uint32)
TEXT ·cpuid(SB),NOSPLIT,$0-24
	MOVL	leaf+0(FP), AX
	MOVL	sub+4(FP), CX
	CPUID
	MOVL	AX, a+8(FP)
	MOVL	BX, b+12(FP)
	MOVL	CX, c+16(FP)
	MOVL	DX, d+20(FP)
	RET

// func imageEnd() uintptr
TEXT ·imageEnd(SB),NOSPLIT,$0-8
	LEAQ	runtime·end(SB), AX
	MOVQ	AX, ret+0(FP)
	RET
