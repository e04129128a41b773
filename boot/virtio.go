package boot

// Virtio devices of Amber's VMM. Each is a virtio-mmio transport (virtio
// spec v1.2 §4.2) with a 4 KiB register page in the 32-bit MMIO hole,
// announced on the kernel command line the way Linux reads it:
//
//	virtio_mmio.device=4K@ADDR:IRQ
//
// Under QEMU's microvm IRQ is an IOAPIC input. Amber's VMM has no IOAPIC:
// a device interrupts with an MSI straight to the local APIC, and IRQ is
// that MSI's vector. The kernel tells the two apart by the VMM
// (AmberFlagHypercalls): under Amber's VMM the number is a vector.
const (
	// VirtioMMIOPA is the first transport's registers; transport i is at
	// VirtioMMIOPA + i*VirtioMMIOSize. The 2 MiB page is its own (the
	// kernel maps device registers by 2 MiB pages, uncached), apart from
	// the debug device's.
	VirtioMMIOPA   = 0xd020_0000
	VirtioMMIOSize = 0x1000

	// VirtioVector is transport 0's interrupt vector under Amber's VMM
	// (transport i raises VirtioVector+i): above the timer's priority
	// class, next to the debug device's.
	VirtioVector = 0x41
)
