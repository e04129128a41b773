package kernel

import (
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// Preemption. The local APIC's timer (xAPIC registers at 0xfee00000, the
// in-kernel LAPIC under KVM) ticks at 1 kHz; a tick that interrupts user
// code wakes the threads whose deadline passed and, when another thread
// is runnable and the running one has had its slice (or a sleeper just
// woke), saves the interrupted context on the thread's kernel stack and
// continues another thread. A tick that interrupts the kernel only asks
// for a reschedule at the next return to user code: kernel code is never
// preempted, which is what keeps the core free of locks. While every
// thread is blocked the timer is masked and the vCPU idles in the VMM:
// tickless.

const (
	lapicBase      = 0xfee00000
	lapicID        = 0x20
	lapicEOI       = 0xb0
	lapicSVR       = 0xf0
	lapicICR       = boot.LAPICICR - lapicBase
	lapicLVTTimer  = 0x320
	lapicLVTLINT0  = 0x350
	lapicLVTLINT1  = 0x360
	lapicLVTError  = 0x370
	lapicTimerInit = 0x380
	lapicTimerCur  = 0x390
	lapicTimerDiv  = 0x3e0
	lvtMasked      = 1 << 16
	lvtPeriodic    = 1 << 17

	timerVector = 32
	tickNs      = 1_000_000 // 1 kHz: ~1.4% of a vCPU here (docs/kernel.md, "Measured here")
	timesliceNs = 4_000_000
)

// sigWork bits: what the return to user code must do first.
const (
	workSignal   = 1 << 0 // a thread may have a deliverable signal
	workResched  = 1 << 1 // a tick asked for a reschedule
	workHostSigs = 1 << 2 // the VMM posted signals (Ctrl-C)
)

var (
	lapicOn     bool
	timerCount  uint32 // initial count for one tick
	ticks       uint64
	sliceStart  int64   // when the running thread was last switched to
	hostSignals uintptr // address of AmberInfo.HostSignals; 0 outside Amber's VMM
)

//go:nosplit
func lapicWrite(reg uintptr, v uint32) { atomic.StoreUint32(u32at(lapicBase+reg), v) }

//go:nosplit
func lapicRead(reg uintptr) uint32 { return atomic.LoadUint32(u32at(lapicBase + reg)) }

// mapLAPIC adds the 2 MiB page holding the LAPIC registers to the page
// tables.
//
//go:nosplit
func mapLAPIC() bool { return mapUncached(lapicBase) }

// mapUncached identity-maps the 2 MiB page holding device registers at
// pa: user-accessible (the kernel runs at CPL3), uncached. It fails where
// something else is mapped there (RAM, say).
//
//go:nosplit
func mapUncached(pa uintptr) bool {
	const pcd, pwt = 1 << 4, 1 << 3
	pa &^= 2<<20 - 1
	table := pml4
	for level := 3; level > 1; level-- {
		idx := (pa >> (12 + 9*uint(level))) & 511
		e := u64at(table + idx*8)
		if *e&pteP == 0 {
			pg := allocPage()
			if pg == 0 {
				return false
			}
			clearPage(pg)
			*e = uint64(pg) | pteP | pteW | pteU
		} else if *e&ptePS != 0 {
			return false
		}
		table = uintptr(*e & pteAddrMask)
	}
	e := u64at(table + ((pa>>21)&511)*8)
	if *e&pteP == 0 {
		*e = uint64(pa) | pteP | pteW | pteU | ptePS | pcd | pwt
	}
	return *e&pteAddrMask == uint64(pa) && *e&(ptePS|pcd) == ptePS|pcd
}

// lapicInit starts the periodic tick. Without a local APIC (CPUID) the
// kernel stays cooperative.
//
//go:nosplit
func lapicInit() {
	_, _, _, d := cpuid(1, 0)
	if d&(1<<9) == 0 || !mapLAPIC() {
		return
	}
	// A BIOS (QEMU -M pc) leaves LINT0 in ExtINT mode: the 8259's
	// interrupts would then arrive on vectors 8-15, where the CPU's own
	// exceptions are. Nothing of the guest uses them.
	lapicWrite(lapicLVTLINT0, lvtMasked)
	lapicWrite(lapicLVTLINT1, lvtMasked)
	lapicWrite(lapicLVTError, lvtMasked)
	lapicWrite(lapicSVR, 0x1ff) // enabled, spurious vector 0xff
	lapicWrite(lapicTimerDiv, 0xb)
	timerCount = tickNs // KVM's in-kernel LAPIC counts at 1 GHz
	if !pvHypercalls {
		timerCount = lapicTicksPerMs()
	}
	lapicWrite(lapicLVTTimer, timerVector|lvtPeriodic)
	lapicWrite(lapicTimerInit, timerCount)
	lapicOn = true
}

// lapicTicksPerMs measures the timer's clock against the TSC: KVM's
// in-kernel LAPIC counts at 1 GHz, other VMMs differ.
//
//go:nosplit
func lapicTicksPerMs() uint32 {
	lapicWrite(lapicLVTTimer, lvtMasked)
	lapicWrite(lapicTimerInit, 0xffffffff)
	t0 := nanotime()
	for nanotime()-t0 < 200_000 {
	}
	elapsed := 0xffffffff - lapicRead(lapicTimerCur)
	ns := nanotime() - t0
	lapicWrite(lapicTimerInit, 0)
	if elapsed == 0 || ns <= 0 {
		return tickNs // assume 1 GHz
	}
	return uint32(uint64(elapsed) * tickNs / uint64(ns))
}

// timerMask stops or restarts the tick around idle periods.
//
//go:nosplit
func timerMask(masked bool) {
	if !lapicOn {
		return
	}
	if masked {
		lapicWrite(lapicLVTTimer, timerVector|lvtPeriodic|lvtMasked)
	} else {
		lapicWrite(lapicLVTTimer, timerVector|lvtPeriodic)
		lapicWrite(lapicTimerInit, timerCount)
	}
}

// kernelContext reports whether an interrupted stack pointer is one of the
// kernel's stacks: user code never runs on them.
//
//go:nosplit
func kernelContext(sp uint64) bool {
	if sp >= uint64(kstackLow) && sp <= uint64(ramEnd) {
		return true
	}
	return sp >= boot.ISTPA && sp <= boot.BootStackTop
}

// timerInterrupt serves a tick; see the comment at the top of the file.
//
// It runs on a kernel stack (timerEntry), so a tick that arrives as soon
// as this one is acknowledged nests harmlessly.
//
//go:nosplit
func timerInterrupt(tf *boot.TrapFrame, fp uintptr) uintptr {
	ticks++
	if hostSignals != 0 && (atomic.LoadUint64(u64at(hostSignals)) != 0 || dataSyncing) {
		sigWork |= workHostSigs // dataSyncing: the wait's deadline is checked there
	}
	if kernelContext(tf.RSP) {
		sigWork |= workResched
		lapicWrite(lapicEOI, 0)
		return 0
	}
	now := nanotime()
	woke := expireTimersCount(now)
	if irqWoke {
		// A device interrupt woke a thread while this one ran user
		// code: it gets the vCPU now rather than after the slice.
		irqWoke = false
		woke++
	}
	if sigWork&workHostSigs != 0 {
		takeHostSignals()
	}
	me := cpu0.cur
	next := nextRunnable(me)
	if next < 0 || woke == 0 && now-sliceStart < timesliceNs {
		if sigWork&workSignal != 0 && threads[me].pending&^threads[me].sigmask != 0 {
			// A signal for the running thread (Ctrl-C, a tgkill to
			// itself from another context): deliver it right here.
			preemptTo(tf, fp, me)
		}
		lapicWrite(lapicEOI, 0)
		return 0
	}
	preemptTo(tf, fp, next)
	return 0
}

// takeHostSignals delivers the signals the VMM posted (Ctrl-C is SIGINT)
// to the process.
//
//go:nosplit
func takeHostSignals() {
	sigWork &^= workHostSigs
	if hostSignals == 0 {
		return
	}
	deliverHostSignals(dataHoldSignals(atomic.SwapUint64(u64at(hostSignals), 0)))
}

// deliverHostSignals delivers host signals (bit sig-1 of bits).
//
//go:nosplit
func deliverHostSignals(bits uint64) {
	for sig := uint64(1); sig < nsig; sig++ {
		if bits&(1<<(sig-1)) != 0 {
			processSignal(sig)
		}
	}
}
