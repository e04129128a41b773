package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Exception vectors handled here.
const (
	vecDE = 0
	vecUD = 6
	vecGP = 13
	vecPF = 14
)

// trap handles an exception on the IST stack; xsave holds the vector
// state at the exception. It returns 0 to resume the (possibly redirected)
// context with IRETQ, or the address of a system-call frame on the
// thread's kernel stack to run a system call instead (a SYSCALL
// instruction that raised #UD because EFER.SCE is clear).
//
//go:nosplit
func trap(tf *boot.TrapFrame, xsave uintptr) uintptr {
	if tf.Vector >= 32 {
		return irqDispatch(tf, xsave) // irq.go
	}
	cr2 := uint64(0)
	switch tf.Vector {
	case vecPF:
		cr2 = uint64(faultAddr())
		if tf.ErrorCode&1 == 0 && lazyFault(uintptr(cr2)) {
			return 0
		}
		if lazyOOM && !kernelContext(tf.RSP) {
			// Memory promised to a lazy mapping ran out: no fault the
			// program could handle, so it is killed as Linux's OOM killer
			// would (SIGKILL), with a message saying why.
			crash(tf, "out of memory: no free page for memory the program touched (raise --mem)", 128+9)
		}
	case vecUD:
		if userMapped(uintptr(tf.RIP), 2) && *(*uint16)(ptr(uintptr(tf.RIP))) == 0x050f { // SYSCALL
			return syscallFromTrap(tf)
		}
	}
	if kernelContext(tf.RSP) {
		// A bad user address the system call's checks missed, in one of
		// the user-copy routines: the call fails with EFAULT (uaccess.go).
		if uaccessFixup(tf) {
			return 0
		}
		// Anywhere else it is a fault in the kernel itself, a bug: there
		// is no signal to deliver, so stop with the report.
		crash(tf, "fault in the kernel while serving the program (a kernel bug)", boot.ExitCrash)
	}
	sig, ok := deliverFault(tf, xsave, cr2)
	if ok {
		return 0
	}
	if sig != 0 {
		// Linux kills a process whose fault it cannot deliver.
		crash(tf, "fatal signal: the program has no handler for this fault (or blocks it)", 128+sig)
	}
	crash(tf, "unhandled exception", boot.ExitCrash)
	return 0
}

// syscallFromTrap moves a trapped SYSCALL's registers into a system-call
// frame, as if the instruction had been a CALL of syscallEntry.
//
//go:nosplit
func syscallFromTrap(tf *boot.TrapFrame) uintptr {
	f := (*sysFrame)(ptr(cpu0.kstackTop - frameSize))
	*f = sysFrame{
		rax: tf.RAX, rbx: tf.RBX, rdx: tf.RDX, rsi: tf.RSI, rdi: tf.RDI, rbp: tf.RBP,
		r8: tf.R8, r9: tf.R9, r10: tf.R10, r11: tf.RFLAGS, r12: tf.R12, r13: tf.R13, r14: tf.R14, r15: tf.R15,
		rip: tf.RIP + 2, rsp: tf.RSP, rflags: tf.RFLAGS,
	}
	return uintptr(unsafe.Pointer(f))
}

// crash hands the trap frame to the VMM, which prints a crash report and
// stops the VM. Outside Amber's VMM the registers go to the console.
//
//go:nosplit
func crash(tf *boot.TrapFrame, msg string, status int) {
	if pvHypercalls {
		h := &cpu0.hc
		h.Nr, h.A0, h.A1, h.A2, h.A3 = boot.HCCrash, uint64(uintptr(unsafe.Pointer(tf))), uint64(uintptr(unsafe.Pointer(unsafe.StringData(msg)))), uint64(len(msg)), uint64(status)
		hypercall(uintptr(unsafe.Pointer(h)))
	}
	kprint("amber: ")
	kprint(msg)
	kprint(": vector ")
	kprintInt(int64(tf.Vector))
	kprint(" error ")
	kprintHex(tf.ErrorCode)
	kprint(" rip ")
	kprintHex(tf.RIP)
	kprint(" rsp ")
	kprintHex(tf.RSP)
	kprint("\n")
	exitVM(status)
}
