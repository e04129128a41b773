package kernel

import "unsafe"

// epoll over the core's descriptors: the kinds whose pollable operation
// says so (eventfds, pipes, the console). Regular files and directories
// are refused with EPERM, as on Linux (the os package relies on it to
// treat them as blocking files). Readiness is computed when waiting (the
// kind's ready operation); for edge-triggered interests (the runtime's
// netpoller registers everything with EPOLLET) an event is reported again
// only after the file changed (the kind's gen counter; kinds without one
// report level-triggered).

const (
	maxEpolls   = 8
	maxInterest = 256
	epollIn     = 0x1
	epollOut    = 0x4
	epollErr    = 0x8
	epollHup    = 0x10
	epollRdhup  = 0x2000
	epollET     = 1 << 31
	epollCtlAdd = 1
	epollCtlDel = 2
	epollCtlMod = 3
)

type epollEvent struct {
	events uint32
	data   [8]byte // packed: struct epoll_event is 12 bytes on x86-64
}

type interest struct {
	fd     int64
	events uint32
	gen    uint32 // edge-triggered: the generation last reported
	data   [8]byte
}

type epollInstance struct {
	used bool
	n    int
	set  [maxInterest]interest
}

var epolls [maxEpolls]epollInstance

//go:nosplit
func sysEpollCreate1(f *sysFrame) int64 {
	if f.rdi&^oCloexec != 0 {
		return -eINVAL
	}
	for i := range epolls {
		if !epolls[i].used {
			fd := allocFD(fdEpoll, f.rdi&oCloexec)
			if fd < 0 {
				return fd
			}
			e := &epolls[i]
			e.used = true
			e.n = 0
			ofiles[fds[fd].of-1].ep = i
			return fd
		}
	}
	return -eMFILE
}

//go:nosplit
func sysEpollCreate(f *sysFrame) int64 {
	if int32(f.rdi) <= 0 {
		return -eINVAL
	}
	g := sysFrame{}
	return sysEpollCreate1(&g)
}

// epollForget drops fd from an interest set (the descriptor was closed).
//
//go:nosplit
func epollForget(ep *epollInstance, fd int64) {
	for i := 0; i < ep.n; i++ {
		if ep.set[i].fd == fd {
			ep.n--
			ep.set[i] = ep.set[ep.n]
			return
		}
	}
}

// epollFile is an epoll instance's descriptor.
type epollFile struct{ baseFile }

//go:nosplit
func (*epollFile) release(o *ofile) { epolls[o.ep].used = false }

//go:nosplit
func sysEpollCtl(f *sysFrame) int64 {
	// As on Linux the event is read before anything else is looked at.
	var ev epollEvent
	if f.rsi != epollCtlDel && !copyIn(unsafe.Pointer(&ev), uintptr(f.r10), 12) {
		return -eFAULT
	}
	epf := getFile(f.rdi)
	if epf == nil {
		return -eBADF
	}
	target := getFile(f.rdx)
	if target == nil {
		return -eBADF
	}
	if epf.kind != fdEpoll || f.rdi == f.rdx {
		return -eINVAL
	}
	if !kindOf(target).pollable(target) {
		return -ePERM
	}
	ep := &epolls[epf.ep]
	fd := int64(f.rdx)
	idx := -1
	for i := 0; i < ep.n; i++ {
		if ep.set[i].fd == fd {
			idx = i
		}
	}
	switch f.rsi {
	case epollCtlAdd:
		if idx >= 0 {
			return -eEXIST
		}
		if ep.n == maxInterest {
			return -eNOSPC
		}
		idx = ep.n
		ep.n++
		fallthrough
	case epollCtlMod:
		if idx < 0 {
			return -eNOENT
		}
		in := &ep.set[idx]
		in.fd = fd
		in.events = ev.events
		in.data = ev.data
		g, _ := kindOf(target).gen(target)
		in.gen = g - 1 // report the current state once
		return 0
	case epollCtlDel:
		if idx < 0 {
			return -eNOENT
		}
		ep.n--
		ep.set[idx] = ep.set[ep.n]
		return 0
	}
	return -eINVAL
}

// epollWait collects ready events, blocking up to timeoutNs (-1: forever).
// As on Linux an event the program's array cannot take ends the call
// (EFAULT if it is the first) and is reported again by the next one.
//
//go:nosplit
func epollWait(epfd uint64, events uintptr, max int64, timeoutNs int64) int64 {
	epf := getFile(epfd)
	if epf == nil {
		return -eBADF
	}
	if epf.kind != fdEpoll || max <= 0 || max > (1<<31-1)/12 { // EP_MAX_EVENTS
		return -eINVAL
	}
	if events+uintptr(max)*12 < events || events+uintptr(max)*12 > userLimit {
		return -eFAULT // Linux's access_ok
	}
	deadline := pollDeadline(timeoutNs)
	ep := &epolls[epf.ep]
	for {
		seen := pollSeq
		n := int64(0)
		for i := 0; i < ep.n && n < max; i++ {
			in := &ep.set[i]
			o := getFile(uint64(in.fd))
			if o == nil {
				continue
			}
			k := kindOf(o)
			r := k.ready(o) & (in.events | epollErr | epollHup)
			if r == 0 {
				continue
			}
			g, edge := k.gen(o)
			et := in.events&epollET != 0 && edge
			if et && g == in.gen {
				continue
			}
			ev := epollEvent{events: r, data: in.data}
			if !copyOut(events+uintptr(n)*12, unsafe.Pointer(&ev), 12) {
				if n == 0 {
					return -eFAULT
				}
				return n
			}
			if et {
				in.gen = g
			}
			n++
		}
		if n > 0 || timeoutNs == 0 {
			return n
		}
		if r, done := pollBlock(deadline, seen); done {
			return r
		}
	}
}

// pollDeadline turns a poll timeout (-1: forever) into a deadline.
//
//go:nosplit
func pollDeadline(timeoutNs int64) int64 {
	if timeoutNs > 0 {
		return nanotime() + timeoutNs
	}
	return 0
}

// pollBlock waits for a readiness change until deadline (0: none); done
// says the caller returns r: 0 on timeout, -EINTR on a signal. seen is
// pollSeq before the caller looked at its files: a change an interrupt
// made since (pollNotify) ends the wait at once.
//
//go:nosplit
func pollBlock(deadline int64, seen uint64) (r int64, done bool) {
	switch blockUnless(waitPoll, 0, deadline, &pollSeq, seen) {
	case wokeTimeout:
		return 0, true
	case wokeSignal:
		return -eINTR, true
	}
	return 0, false
}

//go:nosplit
func sysEpollWait(f *sysFrame) int64 {
	ms := int64(int32(f.r10))
	ns := int64(-1)
	if ms >= 0 {
		ns = ms * 1e6
	}
	return epollWait(f.rdi, uintptr(f.rsi), int64(int32(f.rdx)), ns)
}

//go:nosplit
func sysEpollPwait(f *sysFrame) int64 {
	if f.r8 != 0 && !userOK(uintptr(f.r8), 8) { // the signal mask (not applied)
		return -eFAULT
	}
	return sysEpollWait(f)
}

//go:nosplit
func sysEpollPwait2(f *sysFrame) int64 {
	ns := int64(-1)
	if f.r10 != 0 {
		d, r := getTimespec(uintptr(f.r10))
		if r < 0 {
			return r
		}
		ns = d
	}
	if f.r8 != 0 && !userOK(uintptr(f.r8), 8) {
		return -eFAULT
	}
	return epollWait(f.rdi, uintptr(f.rsi), int64(int32(f.rdx)), ns)
}
