package kernel

import (
	mbits "math/bits"
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// Interrupts. Vectors 32-255 are external interrupts, delivered by the
// local APIC: the timer and, from devices, MSIs the VMM routes to it
// (there is no IOAPIC). Each vector has a row in irqTable: its handler,
// and whether the dispatcher acknowledges it (EOI) after the handler; a
// vector without a row is counted and acknowledged, so a device the
// kernel does not know cannot block the ones below its priority.
//
// No interrupt gate has an IST: IF cannot be cleared at CPL3, so an
// interrupt can come between any two instructions, and a delivery on an
// IST stack in use would start over on the frame there. The timer has
// timerEntry; device vectors have irqEntry (entry_amd64.s), which moves
// from a user stack to the thread's kernel stack and sets percpu.inIRQ
// until the last instructions before its IRETQ. A device interrupt that
// comes while inIRQ is set (in a higher priority class before the EOI,
// any after it) sets its bit in irqPending, is acknowledged and returns
// at once; irqDispatch runs the handlers of the recorded vectors before
// it returns, and trapCommon goes round once more for one recorded after
// that. So device handlers never nest in each other: they run one after
// another, on the stack of whatever they interrupted (a system call, a
// tick, the idle loop) or on the thread's kernel stack, and at most one
// tick (timerEntry's bound) nests in one of them.
//
// Handlers are core code. One that completes a thread's wait calls
// irqWake; one that makes a pollable file ready calls pollNotify
// (docs/kernel.md, "Device interrupts").

// irqHandler serves an interrupt; like trap it returns 0 to resume the
// interrupted context.
type irqHandler func(tf *boot.TrapFrame, xsave uintptr) uintptr

type irqRow struct {
	handle irqHandler
	noEOI  bool // the handler acknowledges itself, or nothing may be
}

const spuriousVector = 0xff

// irqTable is static data: interrupts arrive before the Go runtime is up.
var irqTable = [256]irqRow{
	// The tick acknowledges itself: preemptTo does not return.
	timerVector: {handle: timerInterrupt, noEOI: true},
	// The disk under Amber's VMM (boot/virtio.go).
	boot.VirtioVector: {handle: vdaInterrupt},
	// The echo vector, a test of nesting (boot.IRQEchoVector).
	boot.IRQEchoVector: {handle: irqEcho},
	// The spurious vector is not in service: an EOI would end another.
	spuriousVector: {noEOI: true},
}

// irqCounts counts each vector's interrupts (amber_irq_count).
var irqCounts [256]uint64

// irqPending has a bit per device vector that came while another was
// being served (vectors_amd64.s sets it); bits are taken with an atomic
// swap, so one set by an interrupt in between is never lost.
var irqPending [4]uint64

// irqDrainVector is the vector trapCommon gives a pass of irqDispatch
// that serves only irqPending.
const irqDrainVector = 256

// irqDispatch serves the external interrupt in tf, then every one
// recorded in irqPending meanwhile (already acknowledged by its entry).
//
//go:nosplit
func irqDispatch(tf *boot.TrapFrame, xsave uintptr) uintptr {
	if tf.Vector != irqDrainVector {
		v := tf.Vector & 0xff
		irqCounts[v]++
		e := &irqTable[v]
		if e.handle != nil {
			e.handle(tf, xsave)
		}
		if !e.noEOI {
			lapicWrite(lapicEOI, 0)
		}
	}
	for more := true; more; {
		more = false
		for w := range irqPending {
			bits := atomic.SwapUint64(&irqPending[w], 0)
			for bits != 0 {
				v := w*64 + mbits.TrailingZeros64(bits)
				bits &= bits - 1
				more = true
				irqCounts[v]++
				if h := irqTable[v].handle; h != nil {
					h(tf, xsave)
				}
			}
		}
	}
	return 0
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

// irqEchoOwed says the echo vector's last interrupt came from outside
// and is owed its echo.
var irqEchoOwed bool

// irqEcho serves boot.IRQEchoVector: an interrupt the program raised is
// answered with one more of the same vector, raised before irqDispatch's
// EOI so that it is delivered right after it, before the IRETQ; the echo
// itself is not answered.
//
//go:nosplit
func irqEcho(tf *boot.TrapFrame, xsave uintptr) uintptr {
	irqEchoOwed = !irqEchoOwed
	if irqEchoOwed {
		lapicWrite(lapicICR, boot.LAPICSelfIPI|boot.IRQEchoVector)
	}
	return 0
}
