package kernel

import "unsafe"

// sysFrame is the caller's register state saved by the system-call entry
// on the thread's kernel stack; the entry returns to whatever context it
// holds afterwards. entry_amd64.s reads it through go_asm.h
// (sysFrame_rax, ...).
type sysFrame struct {
	rax, rbx, rcx, rdx, rsi, rdi, rbp    uint64
	r8, r9, r10, r11, r12, r13, r14, r15 uint64
	rip, rsp                             uint64
	rflags                               uint64 // used when xrstor != 0
	// xrstor, when not 0, makes the return restore a complete context:
	// the vector registers from the XSAVE image at this address, RFLAGS,
	// RCX and R11 (rt_sigreturn, signal delivery).
	xrstor uint64
}

// frameSize is the room the entry takes for a sysFrame below the kernel
// stack top: the frame, rounded up to keep the stack 16-byte aligned.
const frameSize = (unsafe.Sizeof(sysFrame{}) + 15) &^ 15
