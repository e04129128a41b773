package kernel

import "unsafe"

// File descriptors. A descriptor (fds) names an open file description
// (ofiles: kind, flags, offset, shared by dup); the description refers to
// an inode of the file system (fs.go: regular files, directories,
// devices including the console), a pipe end (pipe.go), an eventfd or an
// epoll instance. Descriptors 0-2 are the console.

const (
	maxFDs   = 1024
	maxFiles = maxFDs // RLIMIT_NOFILE
	maxOFDs  = 1024
)

const (
	fdFree = iota
	fdInode
	fdEventfd
	fdEpoll
	fdPipe
)

// open flags (asm-generic/fcntl.h).
const (
	oAccmode   = 3
	oRdonly    = 0
	oWronly    = 1
	oRdwr      = 2
	oCreat     = 0x40
	oExcl      = 0x80
	oNoctty    = 0x100
	oTrunc     = 0x200
	oAppend    = 0x400
	oNonblock  = 0x800
	oDirectory = 0x10000
	oNofollow  = 0x20000
	oCloexec   = 0x80000
	oPath      = 0x200000
	oTmpfile   = 0x400000
)

// The console's inodes, made first by fsInit after the root (1).
const (
	inoConsole    = 2
	inoConsoleErr = 3
)

type ofile struct {
	kind  int32
	refs  int32
	flags uint64 // access mode and status flags
	ino   uint32 // fdInode
	pipe  int32  // fdPipe
	off   int64
	count uint64 // eventfd counter
	ep    int    // epoll instance index
}

type fdent struct {
	of      int32 // index+1 into ofiles; 0: free
	cloexec bool
}

var ofiles = [maxOFDs]ofile{
	0: {kind: fdInode, refs: 1, flags: oRdwr, ino: inoConsole},
	1: {kind: fdInode, refs: 1, flags: oRdwr, ino: inoConsole},
	2: {kind: fdInode, refs: 1, flags: oRdwr, ino: inoConsoleErr},
}

var fds = [maxFDs]fdent{0: {of: 1}, 1: {of: 2}, 2: {of: 3}}

// newOFD returns a fresh open file description's index, or -ENFILE.
//
//go:nosplit
func newOFD(kind int32, flags uint64) int32 {
	for i := range ofiles {
		o := &ofiles[i]
		if o.kind == fdFree {
			*o = ofile{}
			o.kind = kind
			o.refs = 1
			o.flags = flags &^ (oCloexec | oCreat | oExcl | oNoctty | oTrunc)
			return int32(i)
		}
	}
	return -eNFILE
}

// fdFor binds the lowest free descriptor >= min to description of.
//
//go:nosplit
func fdFor(of int32, cloexec bool, min uint64) int64 {
	for i := min; i < maxFDs; i++ {
		if fds[i].of == 0 {
			fds[i].of = of + 1
			fds[i].cloexec = cloexec
			return int64(i)
		}
	}
	return -eMFILE
}

// allocFD opens a new description of kind and a descriptor for it.
//
//go:nosplit
func allocFD(kind int32, flags uint64) int64 {
	of := newOFD(kind, flags)
	if of < 0 {
		return int64(of)
	}
	fd := fdFor(of, flags&oCloexec != 0, 0)
	if fd < 0 {
		ofiles[of] = ofile{}
	}
	return fd
}

// openInode opens inode ino with flags; the result is a descriptor.
//
//go:nosplit
func openInode(ino uint32, flags uint64) int64 {
	fd := allocFD(fdInode, flags)
	if fd >= 0 {
		ofiles[fds[fd].of-1].ino = ino
		ip(ino).opens++
	}
	return fd
}

//go:nosplit
func getFile(fd uint64) *ofile {
	fsReady()
	if fd >= maxFDs || fds[fd].of == 0 {
		return nil
	}
	return &ofiles[fds[fd].of-1]
}

// putOFD drops a reference to an open file description.
//
//go:nosplit
func putOFD(o *ofile) {
	o.refs--
	if o.refs > 0 {
		return
	}
	switch o.kind {
	case fdEpoll:
		epolls[o.ep].used = false
	case fdPipe:
		pipeClose(o)
		if o.ino != 0 { // a FIFO
			ip(o.ino).opens--
			iput(o.ino)
		}
	case fdInode:
		ip(o.ino).opens--
		iput(o.ino)
	}
	*o = ofile{}
}

//go:nosplit
func closeFD(fd uint64) int64 {
	o := getFile(fd)
	if o == nil {
		return -eBADF
	}
	fds[fd] = fdent{}
	for i := range epolls {
		if epolls[i].used {
			epollForget(&epolls[i], int64(fd))
		}
	}
	putOFD(o)
	return 0
}

//go:nosplit
func sysCloseFn(f *sysFrame) int64 { return closeFD(f.rdi) }

//go:nosplit
func sysReadFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	return ofRead(o, uintptr(f.rsi), uintptr(f.rdx), -1)
}

//go:nosplit
func sysWriteFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	return ofWrite(o, uintptr(f.rsi), uintptr(f.rdx), -1)
}

//go:nosplit
func sysPreadFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	if int64(f.r10) < 0 {
		return -eINVAL
	}
	return ofRead(o, uintptr(f.rsi), uintptr(f.rdx), int64(f.r10))
}

//go:nosplit
func sysPwriteFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	if int64(f.r10) < 0 {
		return -eINVAL
	}
	return ofWrite(o, uintptr(f.rsi), uintptr(f.rdx), int64(f.r10))
}

// ofRead reads into buf at the file offset (pos < 0) or at pos. Like
// Linux it stops where buf stops being the program's memory: a short
// count, or EFAULT when nothing could be stored.
//
//go:nosplit
func ofRead(o *ofile, buf, n uintptr, pos int64) int64 {
	if o.flags&oAccmode == oWronly || o.flags&oPath != 0 {
		return -eBADF
	}
	if n > maxRW {
		n = maxRW
	}
	switch o.kind {
	case fdEventfd:
		if pos >= 0 {
			return -eSPIPE
		}
		return eventfdRead(o, buf, n)
	case fdPipe:
		if pos >= 0 {
			return -eSPIPE
		}
		return pipeRead(o, buf, n)
	case fdInode:
		nd := ip(o.ino)
		switch nd.mode & sIFMT {
		case sIFDIR:
			return -eISDIR
		case sIFREG:
			off := pos
			if pos < 0 {
				off = o.off
			}
			r := fileRead(nd, buf, n, off)
			if pos < 0 && r > 0 {
				o.off += r
			}
			return r
		case sIFCHR:
			return devRead(o, nd.rdev, buf, n, pos)
		}
	}
	return -eINVAL
}

// ofWrite writes from buf like ofRead reads into it.
//
//go:nosplit
func ofWrite(o *ofile, buf, n uintptr, pos int64) int64 {
	if o.flags&oAccmode == oRdonly || o.flags&oPath != 0 {
		return -eBADF
	}
	if n > maxRW {
		n = maxRW
	}
	switch o.kind {
	case fdEventfd:
		if pos >= 0 {
			return -eSPIPE
		}
		return eventfdWrite(o, buf, n)
	case fdPipe:
		if pos >= 0 {
			return -eSPIPE
		}
		return pipeWrite(o, buf, n)
	case fdInode:
		nd := ip(o.ino)
		switch nd.mode & sIFMT {
		case sIFREG:
			off := pos
			if pos < 0 {
				off = o.off
				if o.flags&oAppend != 0 {
					off = nd.size
				}
			}
			r := fileWrite(nd, buf, n, off)
			if pos < 0 && r > 0 {
				o.off = off + r
			}
			return r
		case sIFCHR:
			switch nd.rdev {
			case devConsole, devConsoleErr:
				if pos >= 0 {
					return -eSPIPE
				}
				fd := 1
				if nd.rdev == devConsoleErr {
					fd = 2
				}
				// The console's code reads buf itself: check it first.
				if k := userPrefix(buf, n); k < n {
					if k == 0 {
						return -eFAULT
					}
					n = k
				}
				return consoleWriteSys(fd, userBytes(buf, n))
			}
			return int64(n)
		}
	}
	return -eINVAL
}

// devRead reads from a character device.
//
//go:nosplit
func devRead(o *ofile, rdev uint32, buf, n uintptr, pos int64) int64 {
	switch rdev {
	case devNull:
		return 0
	case devZero:
		return userCount(clearUserSome(buf, n), n)
	case devRandom, devURandom:
		return userCount(fillRandom(buf, n), n)
	case devConsole, devConsoleErr:
		if pos >= 0 {
			return -eSPIPE
		}
		if n == 0 {
			return 0
		}
		// The console's code writes b itself: check it first.
		if n = userPrefix(buf, n); n == 0 {
			return -eFAULT
		}
		b := userBytes(buf, n)
		for {
			r := consoleRead(b)
			if r > 0 {
				return int64(r)
			}
			if r < 0 {
				return 0 // end of input
			}
			if o.flags&oNonblock != 0 {
				return -eAGAIN
			}
			if block(waitInput, 0, 0) == wokeSignal {
				return -eINTR
			}
		}
	}
	return -eINVAL
}

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

type iovec struct{ base, len uint64 }

//go:nosplit
func sysWritevFn(f *sysFrame) int64 { return rwv(f, true, -1) }

//go:nosplit
func sysReadvFn(f *sysFrame) int64 { return rwv(f, false, -1) }

//go:nosplit
func sysPreadvFn(f *sysFrame) int64 {
	if int64(f.r10) < 0 {
		return -eINVAL
	}
	return rwv(f, false, int64(f.r10))
}

//go:nosplit
func sysPwritevFn(f *sysFrame) int64 {
	if int64(f.r10) < 0 {
		return -eINVAL
	}
	return rwv(f, true, int64(f.r10))
}

// rwv serves readv/writev and their positioned forms; a short transfer
// ends the call (a read stops at the first short or empty read). As on
// Linux the iovec array is read whole before any transfer: EFAULT if it
// is not the program's, EINVAL for a negative length.
//
//go:nosplit
func rwv(f *sysFrame, write bool, pos int64) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	iov, cnt := uintptr(f.rsi), int(f.rdx)
	if cnt < 0 || cnt > 1024 {
		return -eINVAL
	}
	if !userOK(iov, uintptr(cnt)*16) {
		return -eFAULT
	}
	for i := 0; i < cnt; i++ {
		var v iovec
		if ucopy(unsafe.Pointer(&v), ptr(iov+uintptr(i)*16), 16) != 0 {
			return -eFAULT
		}
		if int64(v.len) < 0 {
			return -eINVAL
		}
	}
	total := int64(0)
	for i := 0; i < cnt; i++ {
		var v iovec
		if ucopy(unsafe.Pointer(&v), ptr(iov+uintptr(i)*16), 16) != 0 {
			return -eFAULT
		}
		if v.len == 0 {
			continue
		}
		p := pos
		if pos >= 0 {
			p = pos + total
		}
		var r int64
		if write {
			r = ofWrite(o, uintptr(v.base), uintptr(v.len), p)
		} else {
			r = ofRead(o, uintptr(v.base), uintptr(v.len), p)
		}
		if r < 0 {
			if total > 0 {
				return total
			}
			return r
		}
		total += r
		if uint64(r) < v.len {
			break
		}
	}
	return total
}

// whence values of lseek.
const (
	seekSet  = 0
	seekCur  = 1
	seekEnd  = 2
	seekData = 3
	seekHole = 4
)

//go:nosplit
func sysLseekFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	if o.kind != fdInode {
		return -eSPIPE
	}
	nd := ip(o.ino)
	if nd.mode&sIFMT == sIFCHR {
		if nd.rdev == devConsole || nd.rdev == devConsoleErr {
			return -eSPIPE
		}
		return 0
	}
	off := int64(f.rsi)
	switch f.rdx {
	case seekSet:
	case seekCur:
		off += o.off
	case seekEnd:
		if nd.mode&sIFMT == sIFREG {
			off += nd.size
		}
	default:
		return -eINVAL
	}
	if off < 0 {
		return -eINVAL
	}
	o.off = off
	return off
}

// fcntl commands.
const (
	fDupfd        = 0
	fGetfd        = 1
	fSetfd        = 2
	fGetfl        = 3
	fSetfl        = 4
	fGetlk        = 5
	fSetlk        = 6
	fSetlkw       = 7
	fOfdGetlk     = 36
	fOfdSetlk     = 37
	fOfdSetlkw    = 38
	fSetPipeSz    = 1031
	fGetPipeSz    = 1032
	fDupfdCloexec = 1030
	fUnlck        = 2
)

//go:nosplit
func sysFcntlFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	fe := &fds[f.rdi]
	switch f.rsi {
	case fDupfd, fDupfdCloexec:
		if f.rdx >= maxFDs {
			return -eINVAL
		}
		fd := fdFor(fe.of-1, f.rsi == fDupfdCloexec, f.rdx)
		if fd >= 0 {
			o.refs++
		}
		return fd
	case fGetfd:
		if fe.cloexec {
			return 1
		}
		return 0
	case fSetfd:
		fe.cloexec = f.rdx&1 != 0
		return 0
	case fGetfl:
		return int64(o.flags)
	case fSetfl:
		const settable = oNonblock | oAppend
		o.flags = o.flags&^settable | f.rdx&settable
		return 0
	case fGetlk, fOfdGetlk:
		// struct flock is 32 bytes; only l_type changes: nothing is locked.
		l := int16(fUnlck)
		if !userOK(uintptr(f.rdx), 32) || !copyOut(uintptr(f.rdx), unsafe.Pointer(&l), 2) {
			return -eFAULT
		}
		return 0
	case fSetlk, fSetlkw, fOfdSetlk, fOfdSetlkw:
		if !userOK(uintptr(f.rdx), 32) {
			return -eFAULT
		}
		return 0
	case fGetPipeSz, fSetPipeSz:
		if o.kind != fdPipe {
			return -eBADF
		}
		return pipeSize
	}
	return -eINVAL
}

//go:nosplit
func sysDupFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	fd := fdFor(fds[f.rdi].of-1, false, 0)
	if fd >= 0 {
		o.refs++
	}
	return fd
}

//go:nosplit
func dup3(old, new uint64, cloexec bool) int64 {
	o := getFile(old)
	if o == nil || new >= maxFDs {
		return -eBADF
	}
	if fds[new].of != 0 {
		closeFD(new)
	}
	fds[new].of = fds[old].of
	fds[new].cloexec = cloexec
	o.refs++
	return int64(new)
}

//go:nosplit
func sysDup2Fn(f *sysFrame) int64 {
	if f.rdi == f.rsi {
		if getFile(f.rdi) == nil {
			return -eBADF
		}
		return int64(f.rsi)
	}
	return dup3(f.rdi, f.rsi, false)
}

//go:nosplit
func sysDup3Fn(f *sysFrame) int64 {
	if f.rdi == f.rsi || f.rdx&^oCloexec != 0 {
		return -eINVAL
	}
	return dup3(f.rdi, f.rsi, f.rdx&oCloexec != 0)
}

//go:nosplit
func sysIoctlFn(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	const fionbio, fioclex, fionclex = 0x5421, 0x5451, 0x5450
	switch f.rsi {
	case fionbio:
		var on int32
		if !copyIn(unsafe.Pointer(&on), uintptr(f.rdx), 4) {
			return -eFAULT
		}
		if on != 0 {
			o.flags |= oNonblock
		} else {
			o.flags &^= oNonblock
		}
		return 0
	case fioclex:
		fds[f.rdi].cloexec = true
		return 0
	case fionclex:
		fds[f.rdi].cloexec = false
		return 0
	}
	return -eNOTTY
}

// fsync, fdatasync, flock, fadvise: nothing to do in memory.
//
//go:nosplit
func sysFdNopFn(f *sysFrame) int64 {
	if getFile(f.rdi) == nil {
		return -eBADF
	}
	return 0
}

//go:nosplit
func sysEventfd2Fn(f *sysFrame) int64 {
	fd := allocFD(fdEventfd, f.rsi&(oNonblock|oCloexec)|oRdwr)
	if fd >= 0 {
		ofiles[fds[fd].of-1].count = uint64(uint32(f.rdi))
	}
	return fd
}

//go:nosplit
func sysEventfdFn(f *sysFrame) int64 {
	g := sysFrame{rdi: f.rdi}
	return sysEventfd2Fn(&g)
}
