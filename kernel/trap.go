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

// trap handles an exception on the IST stack. It returns 0 to resume the
// interrupted context with IRETQ, or the address of a system-call frame
// on the thread's kernel stack to run a system call instead (a SYSCALL
// instruction that raised #UD because EFER.SCE is clear).
//
//go:nosplit
func trap(tf *boot.TrapFrame) uintptr {
	switch tf.Vector {
	case vecPF:
		if tf.ErrorCode&1 == 0 && pvHypercalls {
			addr := uintptr(hcall(boot.HCFaultAddr, 0, 0, 0))
			if lazyFault(addr) {
				return 0
			}
		}
	case vecUD:
		if *(*uint16)(ptr(uintptr(tf.RIP))) == 0x050f { // SYSCALL
			return syscallFromTrap(tf)
		}
	}
	crash(tf, "unhandled exception")
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
		rip: tf.RIP + 2, rsp: tf.RSP,
	}
	return uintptr(unsafe.Pointer(f))
}

// crash hands the trap frame to the VMM, which prints a crash report and
// stops the VM. Outside Amber's VMM the registers go to the console.
//
//go:nosplit
func crash(tf *boot.TrapFrame, msg string) {
	if pvHypercalls {
		hcall(boot.HCCrash, uint64(uintptr(unsafe.Pointer(tf))), uint64(uintptr(unsafe.Pointer(unsafe.StringData(msg)))), uint64(len(msg)))
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
	exitVM(boot.ExitCrash)
}
