package kernel

// sysFrame is the caller's register state saved by the system-call entry
// on the thread's kernel stack; the entry returns to whatever context it
// holds afterwards. Offsets are mirrored in entry_amd64.s (F_*).
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

const frameSize = 160
