package kernel

import "github.com/amberos/amber/boot"

// Interrupts. Vectors 32-255 are external interrupts, delivered by the
// local APIC: the timer and, from devices, MSIs the VMM routes to it
// (there is no IOAPIC). Each vector has a row in irqTable: its handler,
// and whether the dispatcher acknowledges it (EOI) after the handler; a
// vector without a row is counted and acknowledged, so a device the
// kernel does not know cannot block the ones below its priority.
//
// Device vectors arrive on IST3 (idtInit). An interrupt that nests in
// another on that stack would start over on the frame in use; the LAPIC
// holds back a vector of the same or a lower priority class until the
// EOI, so a handler acknowledges only when it is done with the frame, and
// the window between its EOI and IRETQ stays short. A device that can
// raise again within that window needs an entry like timerEntry, which
// moves to the kernel stack.

// irqHandler serves an interrupt; like trap it returns 0 to resume the
// interrupted context.
type irqHandler func(tf *boot.TrapFrame, xsave uintptr) uintptr

type irqEntry struct {
	handle irqHandler
	noEOI  bool // the handler acknowledges itself, or nothing may be
}

const spuriousVector = 0xff

// irqTable is static data: interrupts arrive before the Go runtime is up.
var irqTable = [256]irqEntry{
	// The tick acknowledges itself: preemptTo does not return.
	timerVector: {handle: timerInterrupt, noEOI: true},
	// The disk under Amber's VMM (boot/virtio.go).
	boot.VirtioVector: {handle: vdaInterrupt},
	// The network interface on a later transport (netdev.go); the same
	// priority class as the disk's.
	boot.VirtioVector + 1: {handle: netInterrupt},
	boot.VirtioVector + 2: {handle: netInterrupt},
	boot.VirtioVector + 3: {handle: netInterrupt},
	boot.VirtioVector + 4: {handle: netInterrupt},
	boot.VirtioVector + 5: {handle: netInterrupt},
	boot.VirtioVector + 6: {handle: netInterrupt},
	boot.VirtioVector + 7: {handle: netInterrupt},
	// The spurious vector is not in service: an EOI would end another.
	spuriousVector: {noEOI: true},
}

// irqCounts counts each vector's interrupts (amber_irq_count).
var irqCounts [256]uint64

// irqDispatch serves the external interrupt in tf.
//
//go:nosplit
func irqDispatch(tf *boot.TrapFrame, xsave uintptr) uintptr {
	v := tf.Vector & 0xff
	irqCounts[v]++
	e := &irqTable[v]
	ret := uintptr(0)
	if e.handle != nil {
		ret = e.handle(tf, xsave)
	}
	if !e.noEOI {
		lapicWrite(lapicEOI, 0)
	}
	return ret
}

// sysAmberIRQCount is amber_irq_count(vector) (boot.SysAmberIRQCount):
// the interrupts of vector taken since boot, for guest tests that wait
// for a device's interrupt.
//
//go:nosplit
func sysAmberIRQCount(f *sysFrame) int64 {
	if f.rdi > 255 {
		return -eINVAL
	}
	return int64(irqCounts[f.rdi])
}
