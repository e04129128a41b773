package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Threads. The runtime's threads (3-5 for most programs) share the one
// vCPU. A thread runs until it blocks in a system call (futex, sleep,
// epoll, console input) or yields; then the next runnable thread, round
// robin, continues where it blocked. With none runnable the vCPU idles in
// the VMM until the earliest deadline or an input event: tickless.

const (
	maxThreads = 128
	kstackSize = boot.KernelStackSize // a system call, a nested tick (with its 4 KiB XSAVE image) and a preempted context
)

// Thread states.
const (
	tFree = iota
	tRunnable
	tBlocked
	tDead // exited; its kernel stack is reusable once another thread runs
)

// What a blocked thread waits for.
const (
	waitSleep = iota + 1
	waitFutex
	waitPoll  // epoll or eventfd: woken by any readiness change
	waitInput // console input
	waitIRQ   // a device's completion: woken by its interrupt handler (irqWake)
	waitDisk  // the disk, busy with another thread's request (blkdev.go)
)

// Why a blocked thread woke.
const (
	wokeEvent = iota + 1
	wokeTimeout
	wokeSignal // a signal arrived: the call returns EINTR
	wokeKick   // a short nanosleep ended early for a service call (sysmonKick)
)

type thread struct {
	state    int
	tid      int64
	ksp      uintptr // kernel stack pointer while switched out
	fsbase   uintptr
	waitKind int
	waitAddr uintptr
	deadline int64 // ns since boot; 0: none
	woke     int
	sigmask  uint64
	pending  uint64 // queued signals, bit sig-1
	altSP    uintptr
	altSize  uintptr
	altFlags int32
	napping  bool // in a nanosleep of at most sysmonMaxNap
}

var (
	threads [maxThreads]thread
	nextTid int64 = 2 // the main thread is tid 1 = pid
	nlive   int

	// Kernel stacks are taken from the top of RAM on demand, one per
	// thread slot ever used (slot i's is the i-th below ramEnd), so the
	// stacks stay one range, [kstackLow, ramEnd), that the interrupt
	// entries tell kernel from user stacks by (timerEntry, irqEntry,
	// kernelContext). A program of 5 threads has 160 KiB of them, not
	// the 4 MiB of maxThreads stacks in the image. A slot keeps its stack
	// when its thread exits: the next thread in the slot reuses it.
	kstackLow uintptr
	nkstacks  int
)

//go:nosplit
func kstackTop(i int) uintptr {
	return ramEnd - uintptr(i)*kstackSize
}

// kstackGrow gives thread slot nkstacks its kernel stack from the top of
// the page pool, or reports false when the pool has no room for it.
// Pages below physEnd only ever come from the bump allocator, so the
// stacks' range never meets a page handed out or freed.
//
//go:nosplit
func kstackGrow() bool {
	if nkstacks == maxThreads || physEnd < physNext+kstackSize {
		return false
	}
	physEnd -= kstackSize
	kstackLow = physEnd
	nkstacks++
	return true
}

//go:nosplit
func threadsInit() {
	if !kstackGrow() {
		kfatal("boot: no memory for the first kernel stack")
	}
	t := &threads[0]
	t.state = tRunnable
	t.tid = 1
	t.fsbase = uintptr(unsafe.Pointer(&bootTLS[1]))
	t.altFlags = ssDisable
	nlive = 1
	cpu0.cur = 0
	cpu0.kstackTop = kstackTop(0)
}

//go:nosplit
func cur() *thread { return &threads[cpu0.cur] }

// block puts the running thread to sleep until wake or the deadline (ns
// since boot, 0 for none) and reports why it woke.
//
//go:nosplit
func block(kind int, addr uintptr, deadline int64) int {
	t := cur()
	t.state = tBlocked
	t.waitKind = kind
	t.waitAddr = addr
	t.deadline = deadline
	t.woke = 0
	schedule()
	return t.woke
}

//go:nosplit
func wake(i int, why int) {
	t := &threads[i]
	if t.state == tBlocked {
		t.state = tRunnable
		t.woke = why
		t.waitKind = 0
	}
}

// blockUnless is block for a waiter whose event an interrupt handler may
// signal (pollNotify, irqWake): the thread is marked blocked first, then
// *seq is compared with the value seen when the caller last looked, so a
// change in between is not lost (the thread does not sleep: wokeEvent).
//
//go:nosplit
func blockUnless(kind int, addr uintptr, deadline int64, seq *uint64, seen uint64) int {
	t := cur()
	t.state = tBlocked
	t.waitKind = kind
	t.waitAddr = addr
	t.deadline = deadline
	t.woke = 0
	if *seq != seen {
		t.state, t.waitKind, t.woke = tRunnable, 0, wokeEvent
		return wokeEvent
	}
	schedule()
	return t.woke
}

// wakeAll wakes every thread blocked for kind.
//
//go:nosplit
func wakeAll(kind int) {
	for i := range threads {
		if threads[i].state == tBlocked && threads[i].waitKind == kind {
			wake(i, wokeEvent)
		}
	}
}

// expireTimers wakes the threads whose deadline has passed and returns
// the earliest deadline still pending (0: none).
//
//go:nosplit
func expireTimers(now int64) int64 {
	next, _ := expireTimersWoke(now)
	return next
}

//go:nosplit
func expireTimersCount(now int64) int {
	_, woke := expireTimersWoke(now)
	return woke
}

//go:nosplit
func expireTimersWoke(now int64) (next int64, woke int) {
	for i := range threads {
		t := &threads[i]
		if t.state != tBlocked || t.deadline == 0 {
			continue
		}
		if t.deadline <= now {
			wake(i, wokeTimeout)
			woke++
		} else if next == 0 || t.deadline < next {
			next = t.deadline
		}
	}
	return next, woke
}

// schedule runs other threads until the calling thread is runnable and
// chosen again. The caller has set its own state.
//
//go:nosplit
func schedule() {
	for {
		expireTimers(nanotime())
		netWake() // netdev.go
		me := cpu0.cur
		for k := 1; k <= maxThreads; k++ {
			i := (me + k) % maxThreads
			if threads[i].state == tRunnable {
				if i != me {
					switchTo(i)
				}
				return
			}
		}
		idle()
	}
}

// idle waits in the VMM for the earliest deadline or input.
//
//go:nosplit
func idle() {
	seen := irqWakes // an interrupt from here on may have woken a thread
	next := expireTimers(nanotime())
	for i := range threads {
		if threads[i].state == tRunnable {
			return
		}
	}
	input := false
	for i := range threads {
		if threads[i].state == tBlocked && (threads[i].waitKind == waitInput || threads[i].waitKind == waitPoll || threads[i].waitKind == waitIRQ) {
			input = true
		}
	}
	// Under Amber's VMM a Ctrl-C can still arrive (as SIGINT).
	if next == 0 && !input && hostSignals == 0 {
		kfatal("deadlock: every thread is blocked with nothing to wake it")
	}
	if netMoved() {
		return // schedule's netWake wakes the pollers
	}
	timerMask(true)
	r := 0
	// An interrupt after the check still ends the wait: under Amber's
	// VMM the device's trigger kicks the idle vCPU (sticky), and the
	// spinning wait watches irqWakes.
	if irqWakes == seen {
		r = idleWait(next, seen)
	}
	timerMask(false)
	if r&idleInput != 0 {
		wakeAll(waitInput)
		wakeAll(waitPoll)
	}
	if hostSignals != 0 && (*u64at(hostSignals) != 0 || dataSyncing) {
		takeHostSignals()
	}
}

// switchTo continues thread i; it returns when the caller is continued.
//
//go:nosplit
func switchTo(i int) {
	prev := cpu0.cur
	next := &threads[i]
	cpu0.cur = i
	cpu0.kstackTop = kstackTop(i)
	sliceStart = nanotime()
	wrfsbase(next.fsbase)
	swtch(&threads[prev].ksp, next.ksp)
}

// clone flags (linux/sched.h).
const (
	cloneVM            = 0x100
	cloneFS            = 0x200
	cloneFiles         = 0x400
	cloneSighand       = 0x800
	cloneThread        = 0x10000
	cloneSettls        = 0x80000
	cloneParentSettid  = 0x100000
	cloneChildCleartid = 0x200000
	cloneChildSettid   = 0x1000000
)

// sysClone creates a thread. Only threads of this process: there is one
// address space and no fork.
//
//go:nosplit
func sysClone(f *sysFrame) int64 {
	flags, stack, ptid, tls := f.rdi, uintptr(f.rsi), uintptr(f.rdx), uintptr(f.r8)
	if flags&(cloneVM|cloneThread|cloneSighand) != cloneVM|cloneThread|cloneSighand {
		return -eNOSYS
	}
	if flags&cloneSettls != 0 {
		if r := fsBaseOK(tls); r < 0 {
			return r
		}
	}
	i := -1
	for j := range threads {
		if j != cpu0.cur && (threads[j].state == tFree || threads[j].state == tDead) {
			i = j
			break
		}
	}
	if nextTid == 2 {
		chargeStart() // mem.go: the runtime's start is over
	}
	if i < 0 || i >= nkstacks && !kstackGrow() {
		return -eAGAIN // as Linux's clone when out of memory for the task
	}
	t := &threads[i]
	*t = thread{}
	t.tid = nextTid
	nextTid++
	t.sigmask = cur().sigmask
	t.altFlags = ssDisable
	t.fsbase = cur().fsbase
	if flags&cloneSettls != 0 {
		t.fsbase = tls
	}
	// The child returns from the same call with RAX = 0 on its own stack.
	top := kstackTop(i)
	child := (*sysFrame)(ptr(top - frameSize))
	*child = *f
	child.rax = 0
	if stack != 0 {
		child.rsp = uint64(stack)
	}
	// swtch pops BP and returns: make it return into forkRet.
	*u64at(top - frameSize - 8) = uint64(forkRetPC())
	*u64at(top - frameSize - 16) = 0
	t.ksp = top - frameSize - 16
	if flags&cloneParentSettid != 0 && ptid != 0 {
		// Linux ignores a bad address here too.
		tid := int32(t.tid)
		copyOut(ptid, unsafe.Pointer(&tid), 4)
	}
	t.state = tRunnable
	nlive++
	return t.tid
}

//go:nosplit
func sysExit(f *sysFrame) int64 {
	t := cur()
	t.state = tDead
	nlive--
	t.pending = 0
	if nlive == 0 {
		exitVM(int(f.rdi & 0xff))
	}
	schedule()
	kfatal("exited thread continued")
	return 0
}

//go:nosplit
func sysExitGroup(f *sysFrame) int64 {
	exitVM(int(f.rdi & 0xff))
	return 0
}

//go:nosplit
func sysSchedYield(f *sysFrame) int64 {
	schedule()
	return 0
}

//go:nosplit
func sysGettid(f *sysFrame) int64 { return cur().tid }

//go:nosplit
func sysGetpid(f *sysFrame) int64 { return 1 }

//go:nosplit
func sysGetppid(f *sysFrame) int64 { return 0 }

//go:nosplit
func sysSetTidAddress(f *sysFrame) int64 { return cur().tid }

// futex operations (linux/futex.h).
const (
	futexWait        = 0
	futexWake        = 1
	futexPrivateFlag = 128
	futexClockRT     = 256
)

// sysFutex: as on Linux, a wait reads its timeout and then the futex word
// (EFAULT for either), and a wake on a private futex only checks that the
// address lies in user space (it never reads the word).
//
//go:nosplit
func sysFutex(f *sysFrame) int64 {
	addr, op, val := uintptr(f.rdi), f.rsi&^(futexPrivateFlag|futexClockRT), uint32(f.rdx)
	if addr&3 != 0 {
		return -eINVAL
	}
	if addr >= userLimit-4 || f.rsi&futexPrivateFlag == 0 && !userOK(addr, 4) {
		return -eFAULT
	}
	switch op {
	case futexWait:
		deadline := int64(0)
		if f.r10 != 0 {
			d, r := getTimespec(uintptr(f.r10))
			if r < 0 {
				return r
			}
			deadline = nanotime() + d
			if deadline < d {
				deadline = 1<<63 - 1
			}
			if deadline == 0 {
				deadline = 1
			}
		}
		var word uint32
		if !copyIn(unsafe.Pointer(&word), addr, 4) {
			return -eFAULT
		}
		if word != val {
			return -eAGAIN
		}
		switch block(waitFutex, addr, deadline) {
		case wokeTimeout:
			return -eTIMEDOUT
		case wokeSignal:
			return -eINTR
		}
		return 0
	case futexWake:
		n := int64(0)
		for i := range threads {
			if n >= int64(val) {
				break
			}
			t := &threads[i]
			if t.state == tBlocked && t.waitKind == waitFutex && t.waitAddr == addr {
				wake(i, wokeEvent)
				n++
			}
		}
		return n
	}
	return -eNOSYS
}

//go:nosplit
func sysSchedGetaffinity(f *sysFrame) int64 {
	size, mask := uintptr(f.rsi), uintptr(f.rdx)
	if size < 8 || size&7 != 0 {
		return -eINVAL
	}
	one := uint64(1) // one vCPU
	if !copyOut(mask, unsafe.Pointer(&one), 8) {
		return -eFAULT
	}
	return 8
}
