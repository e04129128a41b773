package boot

// The debug device: a small MMIO device `vmm` adds on request (the
// vmm.Config.DebugDevice option, for tests and benchmarks of the device
// path). Its 4 KiB register page sits in the 32-bit MMIO hole, above RAM;
// the direct boot maps it user-accessible and uncached in the boot page
// tables, so a guest program reaches it with plain loads and stores at
// its physical address. Registers are 32 bits:
//
//	DebugDevID       read: DebugDevMagic
//	DebugDevVector   read: the interrupt vector the device raises
//	DebugDevDoorbell write: ring; the device (a host goroutine, reached
//	                 without an exit through KVM_IOEVENTFD) answers with
//	                 one interrupt (an MSI through KVM_IRQFD)
//	DebugDevServed   read: the doorbells it has answered
const (
	DebugDevPA       = 0xd000_0000
	DebugDevSize     = 0x1000
	DebugDevMagic    = 0x67626441 // "Adbg"
	DebugDevID       = 0x00
	DebugDevVector   = 0x04
	DebugDevDoorbell = 0x08
	DebugDevServed   = 0x0c

	// DebugDevIRQ is the vector the device raises: above the timer's
	// priority class, so a tick does not hold it back.
	DebugDevIRQ = 0x40
)

// SysAmberIRQCount is Amber's own system call amber_irq_count(vector):
// how many interrupts of that vector the kernel has taken since boot. A
// guest program waits for a device's interrupt by watching it change.
const SysAmberIRQCount = 504

// IRQEchoVector is the kernel's echo vector, a test of interrupt nesting
// that needs no device: a program raises it by writing the local APIC's
// ICR (LAPICICR, a self-IPI: LAPICSelfIPI|vector), and the kernel answers
// every such interrupt with one more of the same vector, raised from
// inside its handler, so that the second arrives in the window between
// the first's EOI and its IRETQ. amber_irq_count(IRQEchoVector) counts
// both.
const (
	IRQEchoVector = 0x4f
	LAPICICR      = 0xfee0_0300
	LAPICSelfIPI  = 1 << 18 // destination shorthand "self", fixed delivery, edge
)
