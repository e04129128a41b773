package kernel

// File descriptors of the core: the console (0-2), eventfds and epoll
// instances, which the runtime's network poller needs even in a program
// that only sleeps. The file system and sockets come as services later.

const maxFiles = 256

const (
	fdFree = iota
	fdConsole
	fdEventfd
	fdEpoll
)

// open flags (asm-generic/fcntl.h).
const (
	oRdwr     = 2
	oNonblock = 0x800
	oCloexec  = 0x80000
)

type file struct {
	kind    int
	flags   uint64 // O_* status flags
	cloexec bool
	count   uint64 // eventfd counter
	ep      int    // epoll instance index
}

var files = [maxFiles]file{
	0: {kind: fdConsole, flags: oRdwr},
	1: {kind: fdConsole, flags: oRdwr},
	2: {kind: fdConsole, flags: oRdwr},
}

//go:nosplit
func allocFD(kind int, flags uint64) int64 {
	for i := range files {
		if files[i].kind == fdFree {
			files[i] = file{kind: kind, flags: flags &^ oCloexec, cloexec: flags&oCloexec != 0}
			return int64(i)
		}
	}
	return -eMFILE
}

//go:nosplit
func getFile(fd uint64) *file {
	if fd >= maxFiles || files[fd].kind == fdFree {
		return nil
	}
	return &files[fd]
}

//go:nosplit
func sysCloseFn(f *sysFrame) int64 {
	fl := getFile(f.rdi)
	if fl == nil {
		return -eBADF
	}
	if fl.kind == fdEpoll {
		epolls[fl.ep].used = false
	}
	*fl = file{}
	return 0
}

//go:nosplit
func sysReadFn(f *sysFrame) int64 {
	fl := getFile(f.rdi)
	if fl == nil {
		return -eBADF
	}
	n := uintptr(f.rdx)
	switch fl.kind {
	case fdConsole:
		if n == 0 {
			return 0
		}
		b := userBytes(uintptr(f.rsi), n)
		for {
			r := consoleRead(b)
			if r > 0 {
				return int64(r)
			}
			if r < 0 {
				return 0 // end of input
			}
			if fl.flags&oNonblock != 0 {
				return -eAGAIN
			}
			if block(waitInput, 0, 0) == wokeSignal {
				return -eINTR
			}
		}
	case fdEventfd:
		if n < 8 {
			return -eINVAL
		}
		for fl.count == 0 {
			if fl.flags&oNonblock != 0 {
				return -eAGAIN
			}
			if block(waitPoll, 0, 0) == wokeSignal {
				return -eINTR
			}
		}
		*u64at(uintptr(f.rsi)) = fl.count
		fl.count = 0
		wakeAll(waitPoll)
		return 8
	}
	return -eINVAL
}

//go:nosplit
func sysWriteFn(f *sysFrame) int64 {
	fl := getFile(f.rdi)
	if fl == nil {
		return -eBADF
	}
	n := uintptr(f.rdx)
	switch fl.kind {
	case fdConsole:
		fd := 1
		if f.rdi == 2 {
			fd = 2
		}
		consoleWrite(fd, userBytes(uintptr(f.rsi), n))
		return int64(n)
	case fdEventfd:
		if n < 8 {
			return -eINVAL
		}
		v := *u64at(uintptr(f.rsi))
		if v == ^uint64(0) {
			return -eINVAL
		}
		fl.count += v
		wakeAll(waitPoll)
		return 8
	}
	return -eINVAL
}

type iovec struct{ base, len uint64 }

//go:nosplit
func sysWritevFn(f *sysFrame) int64 {
	iov, cnt := uintptr(f.rsi), int(f.rdx)
	total := int64(0)
	for i := 0; i < cnt; i++ {
		v := (*iovec)(ptr(iov + uintptr(i)*16))
		g := sysFrame{rdi: f.rdi, rsi: v.base, rdx: v.len}
		r := sysWriteFn(&g)
		if r < 0 {
			if total > 0 {
				return total
			}
			return r
		}
		total += r
	}
	return total
}

//go:nosplit
func sysReadvFn(f *sysFrame) int64 {
	iov, cnt := uintptr(f.rsi), int(f.rdx)
	for i := 0; i < cnt; i++ {
		v := (*iovec)(ptr(iov + uintptr(i)*16))
		if v.len != 0 {
			g := sysFrame{rdi: f.rdi, rsi: v.base, rdx: v.len}
			return sysReadFn(&g)
		}
	}
	return 0
}

//go:nosplit
func sysPreadFn(f *sysFrame) int64 {
	if getFile(f.rdi) == nil {
		return -eBADF
	}
	return -eSPIPE
}

//go:nosplit
func sysLseekFn(f *sysFrame) int64 {
	if getFile(f.rdi) == nil {
		return -eBADF
	}
	return -eSPIPE
}

// fcntl commands.
const (
	fDupfd        = 0
	fGetfd        = 1
	fSetfd        = 2
	fGetfl        = 3
	fSetfl        = 4
	fDupfdCloexec = 1030
)

//go:nosplit
func sysFcntlFn(f *sysFrame) int64 {
	fl := getFile(f.rdi)
	if fl == nil {
		return -eBADF
	}
	switch f.rsi {
	case fGetfd:
		if fl.cloexec {
			return 1
		}
		return 0
	case fSetfd:
		fl.cloexec = f.rdx&1 != 0
		return 0
	case fGetfl:
		return int64(fl.flags)
	case fSetfl:
		fl.flags = fl.flags&^oNonblock | f.rdx&oNonblock
		return 0
	}
	return -eINVAL
}

//go:nosplit
func sysIoctlFn(f *sysFrame) int64 {
	if getFile(f.rdi) == nil {
		return -eBADF
	}
	return -eNOTTY
}

// stat for the console: a character device, like a terminal or /dev/null.
type statT struct {
	dev     uint64
	ino     uint64
	nlink   uint64
	mode    uint32
	uid     uint32
	gid     uint32
	_       int32
	rdev    uint64
	size    int64
	blksize int64
	blocks  int64
	atime   timespec
	mtime   timespec
	ctime   timespec
	_       [3]int64
}

//go:nosplit
func sysFstatFn(f *sysFrame) int64 {
	fl := getFile(f.rdi)
	if fl == nil {
		return -eBADF
	}
	st := (*statT)(ptr(uintptr(f.rsi)))
	*st = statT{}
	st.nlink = 1
	st.blksize = 4096
	st.ino = f.rdi + 1
	if fl.kind == fdConsole {
		st.mode = 0o20620 // S_IFCHR | rw--w----
		st.rdev = 0x8801
	} else {
		st.mode = 0o600
	}
	return 0
}

// Paths: no file system yet, so nothing exists. The runtime's probes of
// /proc and /sys get ENOENT, which it handles.

//go:nosplit
func sysOpenFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysOpenatFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysStatPathFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysNewfstatatFn(f *sysFrame) int64 {
	// AT_EMPTY_PATH on a descriptor is fstat.
	if f.r10&0x1000 != 0 && f.rsi != 0 && *(*byte)(ptr(uintptr(f.rsi))) == 0 {
		g := sysFrame{rdi: f.rdi, rsi: f.rdx}
		return sysFstatFn(&g)
	}
	return -eNOENT
}

//go:nosplit
func sysReadlinkFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysReadlinkatFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysAccessFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysFaccessatFn(f *sysFrame) int64 { return -eNOENT }

//go:nosplit
func sysEventfd2Fn(f *sysFrame) int64 {
	fd := allocFD(fdEventfd, f.rsi&(oNonblock|oCloexec)|oRdwr)
	if fd >= 0 {
		files[fd].count = uint64(uint32(f.rdi))
	}
	return fd
}

// epoll.
const (
	maxEpolls   = 8
	maxInterest = 64
	epollIn     = 0x1
	epollOut    = 0x4
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
	data   [8]byte
}

type epollInstance struct {
	used bool
	n    int
	set  [maxInterest]interest
}

var epolls [maxEpolls]epollInstance

//go:nosplit
func sysEpollCreate1Fn(f *sysFrame) int64 {
	for i := range epolls {
		if !epolls[i].used {
			fd := allocFD(fdEpoll, f.rdi&oCloexec)
			if fd < 0 {
				return fd
			}
			epolls[i] = epollInstance{used: true}
			files[fd].ep = i
			return fd
		}
	}
	return -eMFILE
}

//go:nosplit
func sysEpollCreateFn(f *sysFrame) int64 {
	g := sysFrame{}
	return sysEpollCreate1Fn(&g)
}

//go:nosplit
func sysEpollCtlFn(f *sysFrame) int64 {
	epf := getFile(f.rdi)
	if epf == nil || epf.kind != fdEpoll {
		return -eBADF
	}
	target := getFile(f.rdx)
	if target == nil {
		return -eBADF
	}
	if target.kind != fdEventfd && target.kind != fdConsole {
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
			return -eNOMEM
		}
		idx = ep.n
		ep.n++
		fallthrough
	case epollCtlMod:
		if idx < 0 {
			return -eNOENT
		}
		ev := (*epollEvent)(ptr(uintptr(f.r10)))
		ep.set[idx] = interest{fd: fd, events: ev.events, data: ev.data}
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

//go:nosplit
func readiness(fd int64) uint32 {
	fl := &files[fd]
	switch fl.kind {
	case fdEventfd:
		if fl.count > 0 {
			return epollIn | epollOut
		}
		return epollOut
	case fdConsole:
		return epollOut
	}
	return 0
}

// epollWait collects ready events, blocking up to timeoutNs (-1: forever).
//
//go:nosplit
func epollWait(epfd uint64, events uintptr, max int64, timeoutNs int64) int64 {
	epf := getFile(epfd)
	if epf == nil || epf.kind != fdEpoll {
		return -eBADF
	}
	if max <= 0 {
		return -eINVAL
	}
	deadline := int64(0)
	if timeoutNs > 0 {
		deadline = nanotime() + timeoutNs
	}
	ep := &epolls[epf.ep]
	for {
		n := int64(0)
		for i := 0; i < ep.n && n < max; i++ {
			in := &ep.set[i]
			if r := readiness(in.fd) & in.events; r != 0 {
				ev := (*epollEvent)(ptr(events + uintptr(n)*12))
				ev.events = r
				ev.data = in.data
				n++
			}
		}
		if n > 0 || timeoutNs == 0 {
			return n
		}
		switch block(waitPoll, 0, deadline) {
		case wokeTimeout:
			return 0
		case wokeSignal:
			return -eINTR
		}
	}
}

//go:nosplit
func sysEpollWaitFn(f *sysFrame) int64 {
	ms := int64(int32(f.r10))
	ns := int64(-1)
	if ms >= 0 {
		ns = ms * 1e6
	}
	return epollWait(f.rdi, uintptr(f.rsi), int64(int32(f.rdx)), ns)
}

//go:nosplit
func sysEpollPwaitFn(f *sysFrame) int64 { return sysEpollWaitFn(f) }

//go:nosplit
func sysEpollPwait2Fn(f *sysFrame) int64 {
	ns := int64(-1)
	if f.r10 != 0 {
		ns = (*timespec)(ptr(uintptr(f.r10))).ns()
	}
	return epollWait(f.rdi, uintptr(f.rsi), int64(int32(f.rdx)), ns)
}
