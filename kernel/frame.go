package kernel

// sysFrame is the caller's register state saved by the system-call entry
// on the thread's kernel stack; the entry returns to whatever context it
// holds afterwards. Offsets are mirrored in entry_amd64.s (F_*).
type sysFrame struct {
	rax, rbx, rcx, rdx, rsi, rdi, rbp    uint64
	r8, r9, r10, r11, r12, r13, r14, r15 uint64
	rip, rsp                             uint64
	_                                    uint64 // pad to 16 bytes
}

const frameSize = 144
