package kernel

import (
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// Polling before idling. Under Amber's VMM an idle vCPU leaves KVM_RUN
// (HCIdle) and the VMM waits for the deadline, input or a device's
// interrupt: one exit to the vCPU loop each time the guest runs out of
// work, which for a server is once per request or more. Like Linux's
// guest haltpoll cpuidle driver and KVM's halt_poll_ns, idle first spins
// for up to idlePollNs watching what would end the wait without an exit:
// a device's interrupt (irqWakes), the network rings (netMoved), the
// earliest deadline and a host signal. Console input is seen only by
// the VMM, at the latest one poll later. The price is the host CPU the
// spin burns while the guest has nothing to do (docs/kernel.md, "Idle
// polling"). It is off unless amber.idlepoll=DURATION asks for it.

const (
	// defaultIdlePoll is amber.idlepoll's default: off. A server pays
	// for the spin (docs/benchmarks.md, BenchmarkNetKVM: idle exits per
	// request 4.9 -> 2.2 at 50 us), but a fixed window also burns host
	// CPU on every wake-up of a guest with nothing coming (an idle clone
	// among many); an adaptive window should come before it is the
	// default.
	defaultIdlePoll = 0
	// maxIdlePoll bounds the option: a longer spin is a busy guest.
	maxIdlePoll = 10_000_000
)

// idlePollNs is how long idle spins before HCIdle (ns; 0: not at all).
var idlePollNs int64 = defaultIdlePoll

func cpuRelax() // PAUSE: kinder to an SMT sibling and to the host's spin detection

// idlePollConfig reads amber.idlepoll=DURATION from the command line
// (kinit calls it).
//
//go:nosplit
func idlePollConfig(si *boot.StartInfo) {
	v := cmdlineValue(si, "amber.idlepoll=")
	if v == nil {
		return
	}
	ns, ok := parseDuration(v)
	if !ok || ns > maxIdlePoll {
		idlePollNs = 0
		kprint("amber: amber.idlepoll= wants a duration from 0 to 10ms (50us, 1ms, 0 or off); not polling\n")
		return
	}
	idlePollNs = ns
}

// parseDuration reads a non-negative duration as Go's time package
// spells one whole number with a unit (ns, us, µs, ms, s), or 0 or off:
// nanoseconds.
//
//go:nosplit
func parseDuration(b []byte) (int64, bool) {
	if len(b) == 3 && b[0] == 'o' && b[1] == 'f' && b[2] == 'f' {
		return 0, true
	}
	n, i := int64(0), 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n > 1e9 {
			return 0, false // more than any unit allows (maxIdlePoll)
		}
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 {
		return 0, false
	}
	unit := b[i:]
	switch {
	case len(unit) == 0:
		if n != 0 {
			return 0, false // a bare number other than 0 has no unit
		}
		return 0, true
	case eqBytes(unit, "ns"):
		return n, true
	case eqBytes(unit, "us"), eqBytes(unit, "µs"):
		return n * 1e3, true
	case eqBytes(unit, "ms"):
		return n * 1e6, true
	case eqBytes(unit, "s"):
		return n * 1e9, true
	}
	return 0, false
}

//go:nosplit
func eqBytes(b []byte, s string) bool {
	return len(b) == len(s) && hasPrefix(b, s)
}

// idlePoll spins for up to idlePollNs, or to deadline (ns since boot, 0:
// none) if that comes first, and reports whether something ended the
// spin that makes the VMM's wait unnecessary: a wake counted since seen,
// the network rings moving, a host signal, or the deadline passing.
//
// The receive queue's interrupt is off while it spins, and back on before
// it gives up: a frame it sees then raises none. That matters because
// the VMM's kick of an idle vCPU is sticky (vmm/irq.go): an interrupt
// caught by the spin would leave a kick that ends the next HCIdle at
// once, an exit for nothing, and the spin would save no exit at all.
// A frame that lands after the spin's last look but before the
// interrupt is on again moves the rings, which the last check sees.
//
//go:nosplit
func idlePoll(deadline int64, seen uint64) bool {
	now := nanotime()
	end := now + idlePollNs
	if deadline != 0 && deadline < end {
		end = deadline
	}
	quiet := vnetOn && vnetUseIRQ
	if quiet {
		vnet.RX.SetPolling(true)
	}
	for {
		if irqWakes != seen || netMoved() || hostSignals != 0 && atomic.LoadUint64(u64at(hostSignals)) != 0 {
			break
		}
		if now >= end {
			if deadline != 0 && now >= deadline {
				break
			}
			if quiet {
				// The store that turns the interrupt on is a locked
				// instruction: the rings are read after it.
				vnet.RX.SetPolling(false)
			}
			return netMoved()
		}
		cpuRelax()
		now = nanotime()
	}
	if quiet {
		vnet.RX.SetPolling(false)
	}
	return true
}
