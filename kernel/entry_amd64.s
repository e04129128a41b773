// The kernel's entry points: the first instruction of the guest, the
// system-call entry that the rewritten runtime CALLs instead of executing
// SYSCALL, the trap entry behind every IDT vector, and the context switch.
// Everything here runs at CPL3 and uses only plain instructions.

#include "textflag.h"

// Offsets and constants come from go_asm.h, which the go tool writes from
// this package's Go definitions (percpu in cpu.go, sysFrame in frame.go,
// asmconst.go): a field renamed or moved there fails this file's build
// instead of silently reading the wrong word. Offsets are written in
// parentheses, (sysFrame_rip)(SP): the assembler takes a bare name(SP) for
// a named stack slot and would accept a misspelled name as offset 0.
#include "go_asm.h"

// Per-CPU block, reached through GS (Go never uses GS).
#define CPU_KSTACK (percpu_kstackTop)
#define CPU_INTICK (percpu_inTick)
#define CPU_INIRQ (percpu_inIRQ)
#define CPU_IRQAX (percpu_irqAX)
#define CPU_IRQBX (percpu_irqBX)

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
//
// Leaf calls, whose answer is one word the kernel already has (getpid,
// gettid), are answered right here, on the caller's stack, before any
// frame is built: only RAX changes (RCX and R11, which SYSCALL clobbers,
// serve as scratch) and the return is the caller's own RET. They take the
// full path while sigWork is set, so a return to user code that has work
// to do (a signal, a reschedule) still does it. Every instruction of the
// leaf path runs on the user stack with the return address above SP, so
// an interrupt anywhere in it is taken as user context, like the caller's
// next instruction would be (docs/kernel.md, "Interrupt windows").
TEXT ·syscallEntry(SB),NOSPLIT|NOFRAME,$0
	CMPQ	AX, $const_nrGetpid
	JEQ	getpid
	CMPQ	AX, $const_nrGettid
	JEQ	gettid
full:
	MOVQ	0(SP), CX
	ADDQ	$8, SP
	JMP	syscallSave<>(SB)
getpid:
	CMPL	·sigWork(SB), $0
	JNE	full
	MOVL	$1, AX	// sysGetpid's answer
	RET
gettid:
	CMPL	·sigWork(SB), $0
	JNE	full
	// threads[cpu0.cur].tid, as sysGettid. A tick between these loads
	// may switch threads, but this thread continues only when cpu0.cur
	// is its own index again, which CX already holds.
	MOVQ	·cpu0+(percpu_cur)(SB), CX
	IMULQ	$(thread__size), CX
	MOVQ	$·threads(SB), R11
	MOVQ	(thread_tid)(R11)(CX*1), AX
	RET

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
	SUBQ	$const_frameSize, SP
	MOVQ	AX, (sysFrame_rax)(SP)
	MOVQ	BX, (sysFrame_rbx)(SP)
	MOVQ	DX, (sysFrame_rdx)(SP)
	MOVQ	SI, (sysFrame_rsi)(SP)
	MOVQ	DI, (sysFrame_rdi)(SP)
	MOVQ	BP, (sysFrame_rbp)(SP)
	MOVQ	R8, (sysFrame_r8)(SP)
	MOVQ	R9, (sysFrame_r9)(SP)
	MOVQ	R10, (sysFrame_r10)(SP)
	MOVQ	R11, (sysFrame_r11)(SP)
	MOVQ	R12, (sysFrame_r12)(SP)
	MOVQ	R13, (sysFrame_r13)(SP)
	MOVQ	R14, (sysFrame_r14)(SP)
	MOVQ	R15, (sysFrame_r15)(SP)
	MOVQ	CX, (sysFrame_rip)(SP)
	MOVQ	R11, (sysFrame_rsp)(SP)
	MOVQ	$0, (sysFrame_xrstor)(SP)
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
	MOVQ	(sysFrame_rax)(SP), AX
	CMPQ	AX, $const_nsys
	JAE	slow
	MOVQ	$·sysTable(SB), BX
	MOVQ	(BX)(AX*8), DX
	TESTQ	DX, DX
	JEQ	slow
	MOVQ	SP, AX
	MOVQ	(TLS), R14
	XORPS	X15, X15
	CALL	(DX)
	MOVQ	AX, (sysFrame_rax)(SP)
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
	MOVQ	(sysFrame_xrstor)(R11), AX
	TESTQ	AX, AX
	JNE	full
	MOVQ	(sysFrame_rbx)(R11), BX
	MOVQ	(sysFrame_rdx)(R11), DX
	MOVQ	(sysFrame_rsi)(R11), SI
	MOVQ	(sysFrame_rdi)(R11), DI
	MOVQ	(sysFrame_rbp)(R11), BP
	MOVQ	(sysFrame_r8)(R11), R8
	MOVQ	(sysFrame_r9)(R11), R9
	MOVQ	(sysFrame_r10)(R11), R10
	MOVQ	(sysFrame_r12)(R11), R12
	MOVQ	(sysFrame_r13)(R11), R13
	MOVQ	(sysFrame_r14)(R11), R14
	MOVQ	(sysFrame_r15)(R11), R15
	MOVQ	(sysFrame_rip)(R11), CX
	MOVQ	(sysFrame_rax)(R11), AX
	// R11 is clobbered by SYSCALL's contract: it carries the user SP.
	MOVQ	(sysFrame_rsp)(R11), R11
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
	MOVQ	(sysFrame_xrstor)(R11), CX
	XRSTOR64	(CX)
	PUSHQ	$const_asmUserDS
	PUSHQ	(sysFrame_rsp)(R11)
	PUSHQ	(sysFrame_rflags)(R11)
	PUSHQ	$const_asmUserCS
	PUSHQ	(sysFrame_rip)(R11)
	MOVQ	(sysFrame_rax)(R11), AX
	MOVQ	(sysFrame_rbx)(R11), BX
	MOVQ	(sysFrame_rcx)(R11), CX
	MOVQ	(sysFrame_rdx)(R11), DX
	MOVQ	(sysFrame_rsi)(R11), SI
	MOVQ	(sysFrame_rdi)(R11), DI
	MOVQ	(sysFrame_rbp)(R11), BP
	MOVQ	(sysFrame_r8)(R11), R8
	MOVQ	(sysFrame_r9)(R11), R9
	MOVQ	(sysFrame_r10)(R11), R10
	MOVQ	(sysFrame_r12)(R11), R12
	MOVQ	(sysFrame_r13)(R11), R13
	MOVQ	(sysFrame_r14)(R11), R14
	MOVQ	(sysFrame_r15)(R11), R15
	MOVQ	(sysFrame_r11)(R11), R11
	IRETQ

// forkRet is where a new thread first runs: swtch "returns" here on the
// thread's kernel stack, whose top holds the frame clone prepared.
// A preempted thread continues here too, from the complete context the
// timer interrupt saved in that frame; its XSAVE image lies between SP
// and the frame, so SP stays where it is (syscallReturn).
TEXT ·forkRet(SB),NOSPLIT|NOFRAME,$0
	MOVQ	CPU_KSTACK(GS), R11
	SUBQ	$const_frameSize, R11
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
	MOVQ	·kstackLow(SB), BX	// the kernel stacks: [kstackLow, ramEnd)
	CMPQ	AX, BX
	JCS	notkstack
	MOVQ	·ramEnd(SB), BX
	CMPQ	AX, BX
	JCS	onkernel
notkstack:
	CMPQ	AX, $const_asmISTBottom	// the exception and boot stacks
	JCS	onuser
	CMPQ	AX, $const_asmBootStackTop
	JCS	onkernel
onuser:
	MOVQ	CPU_KSTACK(GS), BX
	SUBQ	$(const_frameSize+const_xsaveRoom+64+40), BX
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
	PUSHQ	$const_timerVector
	JMP	·trapCommon(SB)
onkernel:
	POPQ	BX
	POPQ	AX
	PUSHQ	$0
	PUSHQ	$const_timerVector
	JMP	·trapCommon(SB)
nested:
	// The previous tick is still being served: it acknowledged its
	// interrupt and this one came before its IRETQ (the host ran the
	// vCPU late, past the next period). Acknowledge this one and return
	// at once, on 56 bytes of stack: the running handler does the tick's
	// work. Without this, a slow enough host made every tick nest in the
	// one before, 4.6 KiB deeper each, until the kernel stack overflowed
	// into another thread's.
	MOVQ	$const_asmLapicEOI, AX
	MOVL	$0, (AX)
	POPQ	BX
	POPQ	AX
	MOVQ	$const_asmUserDS, 32(SP)
	IRETQ

// irqEntry is where a device vector's stub (vectors_amd64.s) continues
// when no device interrupt is being served; the stub pushed an error code
// and the vector. Like timerEntry's, the gate has no IST: the CPU pushed
// the interrupt frame on the interrupted stack, and a user stack is left
// for the running thread's kernel stack at once. From the first
// instruction inIRQ is set, so a device interrupt that comes before the
// handler is done (before its EOI if of a higher priority class, after it
// if not) only records itself and returns (irqPendingEntry), and this
// handler serves it: device handlers never nest in each other, on any
// stack. The scratch registers go to per-CPU slots, not the stack, to use
// no more of a user stack than the timer does (56 bytes): nothing that
// can run before they are restored uses the slots (a tick is held back
// by this vector's priority until the EOI).
//
// Its slot on a kernel stack lies below timerEntry's: a device interrupt
// can come while timerEntry is still copying its frame there.
TEXT ·irqEntry(SB),NOSPLIT|NOFRAME,$0
	MOVQ	$1, CPU_INIRQ(GS)
	MOVQ	AX, CPU_IRQAX(GS)
	MOVQ	BX, CPU_IRQBX(GS)
	// 0(SP) vector, 8 error code, 16 RIP, 24 CS, 32 RFLAGS, 40 RSP, 48 SS
	MOVQ	40(SP), AX
	MOVQ	·kstackLow(SB), BX	// the kernel stacks: [kstackLow, ramEnd)
	CMPQ	AX, BX
	JCS	notkstack
	MOVQ	·ramEnd(SB), BX
	CMPQ	AX, BX
	JCS	onkernel
notkstack:
	CMPQ	AX, $const_asmISTBottom
	JCS	onuser
	CMPQ	AX, $const_asmBootStackTop
	JCS	onkernel
onuser:
	MOVQ	CPU_KSTACK(GS), BX
	SUBQ	$(const_frameSize+const_xsaveRoom+64+40+56), BX
	MOVQ	0(SP), AX
	MOVQ	AX, 0(BX)
	MOVQ	8(SP), AX
	MOVQ	AX, 8(BX)
	MOVQ	16(SP), AX
	MOVQ	AX, 16(BX)
	MOVQ	24(SP), AX
	MOVQ	AX, 24(BX)
	MOVQ	32(SP), AX
	MOVQ	AX, 32(BX)
	MOVQ	40(SP), AX
	MOVQ	AX, 40(BX)
	MOVQ	48(SP), AX
	MOVQ	AX, 48(BX)
	MOVQ	BX, SP
onkernel:
	MOVQ	CPU_IRQAX(GS), AX
	MOVQ	CPU_IRQBX(GS), BX
	JMP	·trapCommon(SB)

// irqPendingEntry ends a device interrupt that came while another was
// being served: its stub set its bit in irqPending; acknowledge it (the
// LAPIC would hold back its priority class until then) and return at
// once, on 48 bytes of the interrupted stack.
TEXT ·irqPendingEntry(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	MOVQ	$const_asmLapicEOI, AX
	MOVL	$0, (AX)
	POPQ	AX
	MOVQ	$const_asmUserDS, 32(SP)
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
	MOVQ	$const_nrAmberMark, AX
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
top:
	SUBQ	$(trapFrame_Vector), SP	// the registers part of the frame
	MOVQ	R15, (trapFrame_R15)(SP)
	MOVQ	R14, (trapFrame_R14)(SP)
	MOVQ	R13, (trapFrame_R13)(SP)
	MOVQ	R12, (trapFrame_R12)(SP)
	MOVQ	R11, (trapFrame_R11)(SP)
	MOVQ	R10, (trapFrame_R10)(SP)
	MOVQ	R9, (trapFrame_R9)(SP)
	MOVQ	R8, (trapFrame_R8)(SP)
	MOVQ	BP, (trapFrame_RBP)(SP)
	MOVQ	DI, (trapFrame_RDI)(SP)
	MOVQ	SI, (trapFrame_RSI)(SP)
	MOVQ	DX, (trapFrame_RDX)(SP)
	MOVQ	CX, (trapFrame_RCX)(SP)
	MOVQ	BX, (trapFrame_RBX)(SP)
	MOVQ	AX, (trapFrame_RAX)(SP)
	MOVQ	SP, BX
	SUBQ	$const_xsaveRoom, SP
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
	MOVQ	(trapFrame_R13)(SP), R13
	MOVQ	8(SP), R12
	MOVQ	24(SP), BX
	MOVL	$-1, AX
	MOVL	$-1, DX
	XRSTOR64	(R12)
	MOVQ	BX, SP
	TESTQ	R13, R13
	JNE	tosyscall
	MOVQ	(trapFrame_R15)(SP), R15
	MOVQ	(trapFrame_R14)(SP), R14
	MOVQ	(trapFrame_R13)(SP), R13
	MOVQ	(trapFrame_R12)(SP), R12
	MOVQ	(trapFrame_R11)(SP), R11
	MOVQ	(trapFrame_R10)(SP), R10
	MOVQ	(trapFrame_R9)(SP), R9
	MOVQ	(trapFrame_R8)(SP), R8
	MOVQ	(trapFrame_RBP)(SP), BP
	MOVQ	(trapFrame_RDI)(SP), DI
	MOVQ	(trapFrame_RSI)(SP), SI
	MOVQ	(trapFrame_RDX)(SP), DX
	MOVQ	(trapFrame_RCX)(SP), CX
	MOVQ	(trapFrame_RBX)(SP), BX
	MOVQ	(trapFrame_RAX)(SP), AX
	// The timer's tick is served: from here on a tick is a new one
	// (timerEntry). Cleared at the last moment, so a tick can nest a full
	// handler only in these few instructions.
	CMPQ	(trapFrame_Vector)(SP), $const_timerVector
	JNE	notick
	MOVQ	$0, CPU_INTICK(GS)
	JMP	iret
notick:
	// A device interrupt is served likewise (irqEntry), but one that
	// came in the meantime cannot be dropped: irqDispatch served every
	// one recorded before it returned, and one recorded since, before
	// inIRQ is clear, is served by going round again, as a pass of
	// irqDispatch with nothing of its own (the vector irqDrain) over the
	// same frame. The registers are those of the interrupted context
	// again, so the frame is rebuilt as it was; only the words below SP,
	// dead now, are written over.
	CMPQ	(trapFrame_Vector)(SP), $32
	JCS	iret
	MOVQ	$0, CPU_INIRQ(GS)
	CMPQ	·irqPending+0(SB), $0
	JNE	again
	CMPQ	·irqPending+8(SB), $0
	JNE	again
	CMPQ	·irqPending+16(SB), $0
	JNE	again
	CMPQ	·irqPending+24(SB), $0
	JNE	again
iret:
	ADDQ	$(trapFrame_RIP), SP	// registers, vector, error code
	// Every context of the guest runs on the flat user data selector. A
	// delivery through an IST stack loads SS with the null selector (RPL
	// 3), and an interrupt nested in that handler saves it: IRETQ to CPL3
	// with a null SS raises #GP (QEMU does this architecturally).
	MOVQ	$const_asmUserDS, (trapFrame_SS-trapFrame_RIP)(SP)
	IRETQ
again:
	MOVQ	$1, CPU_INIRQ(GS)
	MOVQ	$const_asmIRQDrain, (trapFrame_Vector)(SP)
	ADDQ	$(trapFrame_Vector), SP
	JMP	top
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
	MOVL	$const_asmHypercallPort, DX
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
