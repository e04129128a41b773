package kernel

import "testing"

// The wait primitives' bookkeeping, on the host: what an interrupt
// handler does to waiting threads, and the check that keeps a waiter
// from sleeping through a change made while it looked.

func irqTestSetup(t *testing.T) {
	t.Cleanup(func() {
		threads = [maxThreads]thread{}
		irqWoke, irqWakes, pollSeq = false, 0, 0
	})
	threads = [maxThreads]thread{}
	threads[0].state = tRunnable
	cpu0.cur = 0
}

func TestIRQWakeWakesOnlyItsWaiters(t *testing.T) {
	irqTestSetup(t)
	threads[1] = thread{state: tBlocked, waitKind: waitIRQ, waitAddr: 0x41}
	threads[2] = thread{state: tBlocked, waitKind: waitIRQ, waitAddr: 0x42}
	threads[3] = thread{state: tBlocked, waitKind: waitPoll}
	irqWake(0x41)
	if threads[1].state != tRunnable || threads[1].woke != wokeEvent {
		t.Errorf("the waiter for 0x41: state %d, woke %d", threads[1].state, threads[1].woke)
	}
	if threads[2].state != tBlocked || threads[3].state != tBlocked {
		t.Error("irqWake(0x41) woke a thread waiting for something else")
	}
	if !irqWoke || irqWakes != 1 {
		t.Errorf("irqWoke %v, irqWakes %d; want true, 1", irqWoke, irqWakes)
	}
	pollNotify()
	if threads[3].state != tRunnable || threads[2].state != tBlocked {
		t.Errorf("pollNotify: poller %d, disk waiter %d", threads[3].state, threads[2].state)
	}
	if pollSeq != 1 || irqWakes != 2 {
		t.Errorf("pollSeq %d, irqWakes %d; want 1, 2", pollSeq, irqWakes)
	}
}

// A poller that looked at its files before an interrupt's pollNotify
// does not sleep: the change may be one it did not see.
func TestBlockUnlessSeesAChangeMadeWhileLooking(t *testing.T) {
	irqTestSetup(t)
	seen := pollSeq
	pollNotify() // the interrupt, between the look and the block
	if why := blockUnless(waitPoll, 0, 0, &pollSeq, seen); why != wokeEvent {
		t.Fatalf("blockUnless returned %d, want wokeEvent", why)
	}
	if threads[0].state != tRunnable || threads[0].waitKind != 0 {
		t.Errorf("the caller is left state %d, waiting for %d", threads[0].state, threads[0].waitKind)
	}
}

// irqWait returns at once when the device is already done, the thread
// runnable and waiting for nothing.
func TestIRQWaitDoneAlready(t *testing.T) {
	irqTestSetup(t)
	calls := 0
	irqWait(0x41, func() bool {
		calls++
		if threads[0].state != tBlocked || threads[0].waitKind != waitIRQ {
			t.Errorf("done ran with the thread in state %d, waiting for %d: an interrupt now would not find it", threads[0].state, threads[0].waitKind)
		}
		return true
	})
	if calls != 1 || threads[0].state != tRunnable || threads[0].waitKind != 0 {
		t.Errorf("%d calls; state %d, waiting for %d", calls, threads[0].state, threads[0].waitKind)
	}
}
