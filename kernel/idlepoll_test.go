package kernel

import (
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in string
		ns int64
		ok bool
	}{
		{"0", 0, true}, {"off", 0, true}, {"50us", 50_000, true}, {"50µs", 50_000, true},
		{"200ns", 200, true}, {"1ms", 1_000_000, true}, {"2s", 2_000_000_000, true}, {"0us", 0, true},
		{"", 0, false}, {"50", 0, false}, {"us", 0, false}, {"5m", 0, false}, {"-1us", 0, false},
		{"1.5ms", 0, false}, {"50 us", 0, false}, {"99999999999999999999s", 0, false}, {"Off", 0, false},
	} {
		ns, ok := parseDuration([]byte(c.in))
		if ns != c.ns || ok != c.ok {
			t.Errorf("parseDuration(%q) = %d, %v; want %d, %v", c.in, ns, ok, c.ns, c.ok)
		}
	}
}

// idlePoll's ends, each with the others out of reach: the poll window
// (no deadline), the deadline (a window of minutes), and a host signal
// raised by another goroutine while it spins (no deadline, a window of
// minutes: only the signal can end it).
func TestIdlePollEnds(t *testing.T) {
	saved := []any{bootTSC, nsMult, idlePollNs, hostSignals, irqWakes, vnetOn}
	t.Cleanup(func() {
		bootTSC, nsMult, idlePollNs, hostSignals = saved[0].(uint64), saved[1].(uint64), saved[2].(int64), saved[3].(uintptr)
		irqWakes, vnetOn = saved[4].(uint64), saved[5].(bool)
	})
	timeInit(1e9, rdtsc(), 0) // the host's TSC rate is unknown here: these ns are TSC ticks
	vnetOn, irqWakes = false, 7

	idlePollNs = 1000
	if idlePoll(0, 7) {
		t.Error("the window ran out with nothing to see: idlePoll reported true")
	}
	idlePollNs = 600e9
	if !idlePoll(nanotime()+1000, 7) {
		t.Error("the deadline passed: idlePoll reported false")
	}
	if !idlePoll(0, 6) {
		t.Error("a wake counted since seen: idlePoll reported false")
	}
	var word uint64
	hostSignals = uintptr(unsafe.Pointer(&word))
	go atomic.StoreUint64(&word, 1<<1)
	if !idlePoll(0, 7) {
		t.Error("a host signal arrived: idlePoll reported false")
	}
}
