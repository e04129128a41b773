package kernel

import (
	mbits "math/bits"
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// Interrupts. Vectors 32-255 are external interrupts, delivered by the
// local APIC: the timer and, from devices, MSIs Amber's VMM routes to it
// (it has no IOAPIC), or under QEMU's microvm the IOAPIC inputs the disk
// driver routes (blkdev.go). Each vector has a row in irqTable: its handler,
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

// Waiting for a device. A thread that waits for a device's completion
// blocks with irqWait; the device's interrupt handler calls irqWake. Both
// run in the core (nosplit, no allocation), and the handler can come at
// any instruction of the waiter, so irqWait marks the thread blocked
// before it looks at the device: a completion in between makes it
// runnable again and the look sees it.

var (
	// irqWakes counts irqWake and pollNotify calls: idle does not wait
	// in the VMM once it changed.
	irqWakes uint64
	// irqWoke asks the next tick in user code to switch to the woken
	// thread at once (timerInterrupt).
	irqWoke bool
	// pollSeq counts pollNotify calls (pollBlock, blockUnless).
	pollSeq uint64
)

// irqWait blocks the running thread until done reports true; key names
// what it waits for (irqWake(key) wakes it). done runs in the core with
// the thread marked blocked: it must not block. The wait ignores signals,
// like Linux's for a disk request: the device owns the buffers until
// done.
//
//go:nosplit
func irqWait(key uintptr, done func() bool) {
	t := cur()
	for {
		t.state, t.waitKind, t.waitAddr, t.deadline, t.woke = tBlocked, waitIRQ, key, 0, 0
		if done() {
			t.state, t.waitKind = tRunnable, 0
			return
		}
		schedule()
	}
}

// irqWake makes the threads waiting for key runnable: called by an
// interrupt handler.
//
//go:nosplit
func irqWake(key uintptr) {
	irqWakes++
	for i := range threads {
		t := &threads[i]
		if t.state == tBlocked && t.waitKind == waitIRQ && t.waitAddr == key {
			wake(i, wokeEvent)
			irqWoke = true
		}
	}
}

// pollNotify tells the threads waiting in epoll_wait, poll or select (and
// those blocked in waitPoll) that a file's readiness changed: an
// interrupt handler calls it after changing what the file's ready
// reports. The waiters look again; pollBlock does not miss a call made
// while they were looking.
//
//go:nosplit
func pollNotify() {
	pollSeq++
	irqWakes++
	for i := range threads {
		if threads[i].state == tBlocked && threads[i].waitKind == waitPoll {
			wake(i, wokeEvent)
			irqWoke = true
		}
	}
}
