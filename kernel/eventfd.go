package kernel

import "unsafe"

// eventfd: a 64-bit counter; a read takes it whole (blocking at zero), a
// write adds to it.

type eventfdFile struct{ baseFile }

//go:nosplit
func (*eventfdFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	return eventfdRead(o, buf, n)
}

//go:nosplit
func (*eventfdFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	return eventfdWrite(o, buf, n)
}

//go:nosplit
func (*eventfdFile) ready(o *ofile) uint32 {
	if o.count > 0 {
		return epollIn | epollOut
	}
	return epollOut
}

//go:nosplit
func (*eventfdFile) pollable(o *ofile) bool { return true }

//go:nosplit
func eventfdRead(o *ofile, buf, n uintptr) int64 {
	if n < 8 {
		return -eINVAL
	}
	for o.count == 0 {
		if o.flags&oNonblock != 0 {
			return -eAGAIN
		}
		if block(waitPoll, 0, 0) == wokeSignal {
			return -eINTR
		}
	}
	if !copyOut(buf, unsafe.Pointer(&o.count), 8) {
		return -eFAULT // the count stays for the next read
	}
	o.count = 0
	wakeAll(waitPoll)
	return 8
}

//go:nosplit
func eventfdWrite(o *ofile, buf, n uintptr) int64 {
	if n < 8 {
		return -eINVAL
	}
	var v uint64
	if !copyIn(unsafe.Pointer(&v), buf, 8) {
		return -eFAULT
	}
	if v == ^uint64(0) {
		return -eINVAL
	}
	o.count += v
	wakeAll(waitPoll)
	return 8
}

//go:nosplit
func sysEventfd2(f *sysFrame) int64 {
	fd := allocFD(fdEventfd, f.rsi&(oNonblock|oCloexec)|oRdwr)
	if fd >= 0 {
		ofiles[fds[fd].of-1].count = uint64(uint32(f.rdi))
	}
	return fd
}

//go:nosplit
func sysEventfd(f *sysFrame) int64 {
	g := sysFrame{rdi: f.rdi}
	return sysEventfd2(&g)
}
