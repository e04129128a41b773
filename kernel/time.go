package kernel

import "math/bits"

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

//go:nosplit
func clockNow(clk uint64) (int64, bool) {
	switch clk {
	case clockRealtime, clockRealtimeCoarse:
		return bootUnixNs + nanotime(), true
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

//go:nosplit
func sysClockGettime(f *sysFrame) int64 {
	ns, ok := clockNow(f.rdi)
	if !ok {
		return -eINVAL
	}
	if f.rsi == 0 {
		return -eFAULT
	}
	(*timespec)(ptr(uintptr(f.rsi))).set(ns)
	return 0
}

//go:nosplit
func sysClockGetres(f *sysFrame) int64 {
	if f.rsi != 0 {
		(*timespec)(ptr(uintptr(f.rsi))).set(1)
	}
	return 0
}

//go:nosplit
func sysGettimeofday(f *sysFrame) int64 {
	if f.rdi != 0 {
		ns := bootUnixNs + nanotime()
		tv := (*timespec)(ptr(uintptr(f.rdi)))
		tv.sec = ns / 1e9
		tv.nsec = ns % 1e9 / 1000
	}
	return 0
}

//go:nosplit
func sysTime(f *sysFrame) int64 {
	s := (bootUnixNs + nanotime()) / 1e9
	if f.rdi != 0 {
		*(*int64)(ptr(uintptr(f.rdi))) = s
	}
	return s
}

// sleepUntil blocks the calling thread until the deadline (ns since
// boot); false means a signal interrupted it.
//
//go:nosplit
func sleepUntil(deadline int64) bool {
	for nanotime() < deadline {
		if block(waitSleep, 0, deadline) == wokeSignal {
			return false
		}
	}
	return true
}

//go:nosplit
func sysNanosleep(f *sysFrame) int64 {
	if f.rdi == 0 {
		return -eFAULT
	}
	req := (*timespec)(ptr(uintptr(f.rdi)))
	if req.nsec < 0 || req.nsec >= 1e9 || req.sec < 0 {
		return -eINVAL
	}
	if !sleepUntil(nanotime() + req.ns()) {
		return -eINTR
	}
	return 0
}

//go:nosplit
func sysClockNanosleep(f *sysFrame) int64 {
	if f.rdx == 0 {
		return -eFAULT
	}
	req := (*timespec)(ptr(uintptr(f.rdx)))
	d := req.ns()
	if f.rsi&1 != 0 { // TIMER_ABSTIME
		now, ok := clockNow(f.rdi)
		if !ok {
			return -eINVAL
		}
		d -= now
	}
	if d > 0 && !sleepUntil(nanotime()+d) {
		return -eINTR
	}
	return 0
}
