package kernel

import "unsafe"

// poll and ppoll, over the same readiness epoll reports (regular files
// and the console are always ready, as on Linux).

const (
	pollIn   = 0x1
	pollOut  = 0x4
	pollNval = 0x20
)

type pollfd struct {
	fd      int32
	events  int16
	revents int16
}

//go:nosplit
func pollReady(fd int32) uint32 {
	if fd < 0 {
		return 0
	}
	o := getFile(uint64(fd))
	if o == nil {
		return pollNval
	}
	return kindOf(o).ready(o)
}

// pollWait fills revents and blocks up to timeoutNs (-1: forever). The
// array is checked whole first (Linux copies it in: EFAULT).
//
//go:nosplit
func pollWait(fds uintptr, nfds uint64, timeoutNs int64) int64 {
	if nfds > maxFiles {
		return -eINVAL
	}
	if !userOK(fds, uintptr(nfds)*8) {
		return -eFAULT
	}
	deadline := pollDeadline(timeoutNs)
	for {
		seen := pollSeq
		n := int64(0)
		for i := uint64(0); i < nfds; i++ {
			var p pollfd
			a := ptr(fds + uintptr(i)*8)
			if ucopy(unsafe.Pointer(&p), a, 8) != 0 {
				return -eFAULT
			}
			r := pollReady(p.fd) & (uint32(uint16(p.events)) | epollErr | epollHup | pollNval)
			p.revents = int16(r)
			if ucopy(unsafe.Add(a, 6), unsafe.Pointer(&p.revents), 2) != 0 {
				return -eFAULT
			}
			if r != 0 {
				n++
			}
		}
		if n > 0 || timeoutNs == 0 {
			return n
		}
		if r, done := pollBlock(deadline, seen); done {
			return r
		}
	}
}

//go:nosplit
func sysPoll(f *sysFrame) int64 {
	ms := int64(int32(f.rdx))
	ns := int64(-1)
	if ms >= 0 {
		ns = ms * 1e6
	}
	return pollWait(uintptr(f.rdi), f.rsi, ns)
}

//go:nosplit
func sysPpoll(f *sysFrame) int64 {
	ns := int64(-1)
	if f.rdx != 0 {
		d, r := getTimespec(uintptr(f.rdx))
		if r < 0 {
			return r
		}
		ns = d
	}
	if f.r10 != 0 && !userOK(uintptr(f.r10), 8) { // the signal mask (not applied)
		return -eFAULT
	}
	return pollWait(uintptr(f.rdi), f.rsi, ns)
}
