package kernel

import (
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Time comes from RDTSC (about 9 ns, no exit): nanoseconds since boot are
// (tsc - bootTSC) * nsPerTSC, with nsPerTSC a 32.32 fixed-point factor.
var (
	bootTSC    uint64
	nsMult     uint64 // 2^32 * 1e9 / TSC Hz
	bootUnixNs int64
	tscHz      uint64
)

//go:nosplit
func timeInit(hz, tsc0, unixNs uint64) {
	if hz == 0 {
		kfatal("boot: TSC frequency unknown")
	}
	tscHz = hz
	bootTSC = tsc0
	bootUnixNs = int64(unixNs)
	nsMult = (1e9 << 32) / hz
}

// nanotime returns nanoseconds since boot.
//
//go:nosplit
func nanotime() int64 {
	hi, lo := bits.Mul64(rdtsc()-bootTSC, nsMult)
	return int64(hi<<32 | lo>>32)
}

// Clock IDs (linux/time.h).
const (
	clockRealtime        = 0
	clockMonotonic       = 1
	clockProcessCPU      = 2
	clockThreadCPU       = 3
	clockMonotonicRaw    = 4
	clockRealtimeCoarse  = 5
	clockMonotonicCoarse = 6
	clockBoottime        = 7
)

// monoBase keeps CLOCK_MONOTONIC away from zero, as on a machine that has
// been up for a while; some programs treat 0 as "unset".
const monoBase = 1_000_000_000

// wallBase is CLOCK_REALTIME at boot, in ns since the Unix epoch. Under
// Amber's VMM it is read from the boot information on every call: after a
// restore from a snapshot the VMM moves it so that the wall clock is the
// host's while the monotonic clock continues from the snapshot.
//
//go:nosplit
func wallBase() int64 {
	if amberInfo != 0 {
		return int64(atomic.LoadUint64(&(*boot.AmberInfo)(ptr(amberInfo)).BootUnixNs))
	}
	return bootUnixNs
}

//go:nosplit
func clockNow(clk uint64) (int64, bool) {
	switch clk {
	case clockRealtime, clockRealtimeCoarse:
		return wallBase() + nanotime(), true
	case clockMonotonic, clockMonotonicRaw, clockMonotonicCoarse, clockBoottime,
		clockProcessCPU, clockThreadCPU:
		return monoBase + nanotime(), true
	}
	return 0, false
}

type timespec struct {
	sec  int64
	nsec int64
}

//go:nosplit
func (ts *timespec) ns() int64 { return ts.sec*1e9 + ts.nsec }

//go:nosplit
func (ts *timespec) set(ns int64) {
	ts.sec = ns / 1e9
	ts.nsec = ns % 1e9
}

// putTimespec copies a time in ns to the program's struct timespec at
// addr; false means EFAULT.
//
//go:nosplit
func putTimespec(addr uintptr, ns int64) bool {
	var ts timespec
	ts.set(ns)
	return copyOut(addr, unsafe.Pointer(&ts), unsafe.Sizeof(ts))
}

// getTimespec reads the program's struct timespec at addr: -EFAULT, or
// -EINVAL for one out of range (the nanoseconds, or a negative time).
//
//go:nosplit
func getTimespec(addr uintptr) (int64, int64) {
	var ts timespec
	if !copyIn(unsafe.Pointer(&ts), addr, unsafe.Sizeof(ts)) {
		return 0, -eFAULT
	}
	if ts.nsec < 0 || ts.nsec >= 1e9 || ts.sec < 0 {
		return 0, -eINVAL
	}
	if ts.sec >= (1<<63-1)/1_000_000_000-1 {
		return 1<<63 - 1, 0 // forever
	}
	return ts.ns(), 0
}

//go:nosplit
func sysClockGettime(f *sysFrame) int64 {
	ns, ok := clockNow(f.rdi)
	if !ok {
		return -eINVAL
	}
	if !putTimespec(uintptr(f.rsi), ns) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysClockGetres(f *sysFrame) int64 {
	if f.rsi != 0 && !putTimespec(uintptr(f.rsi), 1) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysGettimeofday(f *sysFrame) int64 {
	if f.rdi != 0 {
		ns := wallBase() + nanotime()
		tv := timespec{sec: ns / 1e9, nsec: ns % 1e9 / 1000} // a struct timeval
		if !copyOut(uintptr(f.rdi), unsafe.Pointer(&tv), unsafe.Sizeof(tv)) {
			return -eFAULT
		}
	}
	if f.rsi != 0 {
		var tz [2]int32 // struct timezone: UTC
		if !copyOut(uintptr(f.rsi), unsafe.Pointer(&tz), unsafe.Sizeof(tz)) {
			return -eFAULT
		}
	}
	return 0
}

//go:nosplit
func sysTime(f *sysFrame) int64 {
	s := (wallBase() + nanotime()) / 1e9
	if f.rdi != 0 && !copyOut(uintptr(f.rdi), unsafe.Pointer(&s), 8) {
		return -eFAULT
	}
	return s
}

// sleepUntil blocks the calling thread until the deadline (ns since
// boot); false means a signal interrupted it.
//
//go:nosplit
func sleepUntil(deadline int64) bool {
	for nanotime() < deadline {
		switch block(waitSleep, 0, deadline) {
		case wokeSignal:
			return false
		case wokeKick:
			return true
		}
	}
	return true
}

// sleepFor sleeps d ns; interrupted by a signal it stores the time left
// at rem (when not 0), as Linux does, and returns -EINTR.
//
//go:nosplit
func sleepFor(d int64, rem uintptr) int64 {
	deadline := nanotime() + d
	if deadline < d {
		deadline = 1<<63 - 1
	}
	if sleepUntil(deadline) {
		return 0
	}
	if rem != 0 {
		left := deadline - nanotime()
		if left < 0 {
			left = 0
		}
		if !putTimespec(rem, left) {
			return -eFAULT
		}
	}
	return -eINTR
}

// nanosleep is also how the Go runtime's sysmon waits between its rounds
// (runtime.usleep), which matters to services: see sysmonKick.
//
//go:nosplit
func sysNanosleep(f *sysFrame) int64 {
	d, r := getTimespec(uintptr(f.rdi))
	if r < 0 {
		return r
	}
	if d <= sysmonMaxNap && sysmonKicks > 0 {
		sysmonKicks--
		return 0
	}
	t := cur()
	if d <= sysmonMaxNap {
		t.napping = true
	}
	r = sleepFor(d, uintptr(f.rsi))
	t.napping = false
	return r
}

//go:nosplit
func sysClockNanosleep(f *sysFrame) int64 {
	d, r := getTimespec(uintptr(f.rdx))
	if r < 0 {
		return r
	}
	if f.rsi&1 == 0 {
		return sleepFor(d, uintptr(f.r10))
	}
	// TIMER_ABSTIME: no time left to report.
	now, ok := clockNow(f.rdi)
	if !ok {
		return -eINVAL
	}
	if d -= now; d <= 0 {
		return 0
	}
	return sleepFor(d, 0)
}
