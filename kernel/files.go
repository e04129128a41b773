package kernel

import "unsafe"

// File descriptors. A descriptor (fds) names an open file description
// (ofiles: kind, flags, offset, shared by dup); the description refers to
// an inode of the file system (inodefile.go: regular files, directories,
// devices including the console), a pipe end (pipe.go), an eventfd
// (eventfd.go) or an epoll instance (fsepoll.go). What each kind does is
// in the file-operations table (fileops.go). Descriptors 0-2 are the
// console.

const (
	maxFDs   = 1024
	maxFiles = maxFDs // RLIMIT_NOFILE
	maxOFDs  = 1024
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
	sock  int32  // fdSocket
	off   int64
	count uint64 // eventfd counter
	ep    int    // epoll instance index
	// The standard descriptions: the host's descriptor type and a
	// regular file's size (stdio.go).
	host     uint8
	hostSize int64
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
	kindOf(o).release(o)
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
	rightsGC() // descriptors in flight to a socket it freed
	return 0
}

//go:nosplit
func sysClose(f *sysFrame) int64 { return closeFD(f.rdi) }

//go:nosplit
func sysRead(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	return ofRead(o, uintptr(f.rsi), uintptr(f.rdx), -1)
}

//go:nosplit
func sysWrite(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	return ofWrite(o, uintptr(f.rsi), uintptr(f.rdx), -1)
}

//go:nosplit
func sysPread64(f *sysFrame) int64 {
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
func sysPwrite64(f *sysFrame) int64 {
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
	return kindOf(o).read(o, buf, n, pos)
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
	return kindOf(o).write(o, buf, n, pos)
}

type iovec struct{ base, len uint64 }

//go:nosplit
func sysWritev(f *sysFrame) int64 { return rwv(f, true, -1) }

//go:nosplit
func sysReadv(f *sysFrame) int64 { return rwv(f, false, -1) }

//go:nosplit
func sysPreadv(f *sysFrame) int64 {
	if int64(f.r10) < 0 {
		return -eINVAL
	}
	return rwv(f, false, int64(f.r10))
}

//go:nosplit
func sysPwritev(f *sysFrame) int64 {
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
func sysLseek(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	return kindOf(o).seek(o, int64(f.rsi), f.rdx)
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
func sysFcntl(f *sysFrame) int64 {
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
	}
	return kindOf(o).fcntl(o, f.rsi, f.rdx)
}

//go:nosplit
func sysDup(f *sysFrame) int64 {
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
func sysDup2(f *sysFrame) int64 {
	if f.rdi == f.rsi {
		if getFile(f.rdi) == nil {
			return -eBADF
		}
		return int64(f.rsi)
	}
	return dup3(f.rdi, f.rsi, false)
}

//go:nosplit
func sysDup3(f *sysFrame) int64 {
	if f.rdi == f.rsi || f.rdx&^oCloexec != 0 {
		return -eINVAL
	}
	return dup3(f.rdi, f.rsi, f.rdx&oCloexec != 0)
}

//go:nosplit
func sysIoctl(f *sysFrame) int64 {
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
	return kindOf(o).ioctl(o, f.rsi, f.rdx)
}

// fsync, fdatasync, flock, fadvise: nothing to do in memory.
//
//go:nosplit
func sysFdNop(f *sysFrame) int64 {
	if getFile(f.rdi) == nil {
		return -eBADF
	}
	return 0
}
