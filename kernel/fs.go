package kernel

import "unsafe"

// The in-memory file system. It is core code, called straight from the
// system-call table (a hand-off to a service goroutine would cost a sysmon
// retake per call), so it follows the core's rules: nosplit, no Go heap,
// no Go pointers in its tables. Inodes live in pages from the physical
// page allocator, 32 to a page, found through inodePages; file contents,
// directory entries and symlink targets live in page trees (fsdata.go).
// The kernel is not preempted inside a system call and the file system
// never blocks, so its static scratch buffers need no lock.

// Inode types and permission bits (linux/stat.h).
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

const (
	maxInodes     = 16384
	inodeSize     = 128
	inodesPerPage = pageSize / inodeSize
	pageSize      = 4096
	maxNameLen    = 255
	maxPathLen    = 4096
	maxSymlinks   = 40
	fsDev         = 0x2a // st_dev of every file
)

// Character devices (inode.rdev: Linux's major<<8|minor).
const (
	devNull       = 0x103
	devZero       = 0x105
	devRandom     = 0x108
	devURandom    = 0x109
	devConsole    = 0x8801 // the console as stdout (and stdin)
	devConsoleErr = 0x8802 // the console as stderr
	devProcFD     = 1      // a directory: /proc/self/fd
)

type inode struct {
	mode   uint32 // sIF* | permissions; 0: free
	nlink  uint32
	uid    uint32
	gid    uint32
	rdev   uint32
	depth  uint32 // levels of index pages above the data pages
	parent uint32 // directories: the parent directory
	nents  uint32 // directories: live entries
	opens  uint32 // open file descriptions referring to it
	next   uint32 // free list
	size   int64  // bytes; directories: entry slots
	root   uintptr
	atime  int64
	mtime  int64
	ctime  int64
	fifo   int32 // FIFOs: index+1 of the pipe while the FIFO is open
	_      [44]byte
}

var _ [inodeSize - unsafe.Sizeof(inode{})]byte
var _ [unsafe.Sizeof(inode{}) - inodeSize]byte

var (
	inodePages [maxInodes / inodesPerPage]uintptr
	inodeHigh  uint32 = 1 // next never-used inode number (0 is "none")
	inodeFree  uint32
	fsInited   bool
	rootIno    uint32
	cwdIno     uint32
	umaskBits  uint32 = 0o022
)

//go:nosplit
func ip(i uint32) *inode {
	return (*inode)(ptr(inodePages[i/inodesPerPage] + uintptr(i%inodesPerPage)*inodeSize))
}

//go:nosplit
func fsNow() int64 { return wallBase() + nanotime() }

// ialloc returns a new inode with the given mode and one link, or 0 when
// the table or memory is full.
//
//go:nosplit
func ialloc(mode uint32) uint32 {
	var i uint32
	if inodeFree != 0 {
		i = inodeFree
		inodeFree = ip(i).next
	} else {
		if inodeHigh >= maxInodes {
			return 0
		}
		i = inodeHigh
		if inodePages[i/inodesPerPage] == 0 {
			pg := allocPage()
			if pg == 0 {
				return 0
			}
			inodePages[i/inodesPerPage] = pg
		}
		inodeHigh++
	}
	n := ip(i)
	*n = inode{}
	n.mode = mode
	n.nlink = 1
	t := fsNow()
	n.atime, n.mtime, n.ctime = t, t, t
	return i
}

// iput frees an inode nobody links to or has open any more.
//
//go:nosplit
func iput(i uint32) {
	n := ip(i)
	if n.nlink != 0 || n.opens != 0 || n.mode == 0 {
		return
	}
	freeFrom(n, 0)
	n.mode = 0
	n.next = inodeFree
	inodeFree = i
}

//go:nosplit
func isDir(i uint32) bool { return ip(i).mode&sIFMT == sIFDIR }

//go:nosplit
func isLink(i uint32) bool { return ip(i).mode&sIFMT == sIFLNK }

// fsInit builds the root: /, /tmp, /dev, /proc/self/fd. It runs on the
// first use of the file system (the runtime's first probes).
//
//go:nosplit
func fsInit() {
	fsInited = true
	rootIno = ialloc(sIFDIR | 0o755)
	r := ip(rootIno)
	r.nlink = 2
	r.parent = rootIno
	cwdIno = rootIno
	if mkdev(0, devConsole, 0o620) != inoConsole || mkdev(0, devConsoleErr, 0o620) != inoConsoleErr {
		kfatal("fs: console inodes misplaced")
	}
	ip(inoConsole).opens = 2 // descriptors 0 and 1
	ip(inoConsoleErr).opens = 1
	tmp := mkdirIn(rootIno, "tmp", 0o1777)
	_ = tmp
	dev := mkdirIn(rootIno, "dev", 0o755)
	mkdev(dev, devNull, 0o666)
	mkdev(dev, devZero, 0o666)
	mkdev(dev, devRandom, 0o666)
	mkdev(dev, devURandom, 0o666)
	linkConsole(dev, inoConsole, "console")
	symlinkIn(dev, "stdin", "/proc/self/fd/0")
	symlinkIn(dev, "stdout", "/proc/self/fd/1")
	symlinkIn(dev, "stderr", "/proc/self/fd/2")
	symlinkIn(dev, "fd", "/proc/self/fd")
	if vdaOn {
		i := ialloc(sIFBLK | 0o660)
		ip(i).rdev = devVda
		a, l := strAddr("vda")
		dirAdd(dev, a, l, i)
	}
	etc := mkdirIn(rootIno, "etc", 0o755)
	fileIn(etc, "passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
	fileIn(etc, "group", "root:x:0:\nnogroup:x:65534:\n")
	fileIn(etc, "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	mkdirIn(rootIno, "root", 0o700)
	proc := mkdirIn(rootIno, "proc", 0o555)
	self := mkdirIn(proc, "self", 0o555)
	fd := mkdirIn(self, "fd", 0o500)
	ip(fd).rdev = devProcFD
	if exePath != 0 {
		// /proc/self/exe names the program (argv[0], made absolute).
		i := ialloc(sIFLNK | 0o777)
		n := ip(i)
		if *(*byte)(ptr(exePath)) != '/' {
			sa, _ := strAddr("/")
			fileWrite(n, sa, 1, 0)
		}
		fileWrite(n, exePath, cstrlen(exePath, maxPathLen-2), n.size)
		a, l := strAddr("exe")
		dirAdd(self, a, l, i)
	}
	if vdaOn && dataMountLen > 0 {
		dataMkMount() // datafile.go
	}
}

// exePath is the address of the program's name (argv[0], NUL-terminated)
// when the boot code recorded it; /proc/self/exe then names it.
var exePath uintptr

//go:nosplit
func fileIn(dir uint32, name, content string) {
	i := ialloc(sIFREG | 0o644)
	ca, cl := strAddr(content)
	fileWrite(ip(i), ca, cl, 0)
	a, l := strAddr(name)
	dirAdd(dir, a, l, i)
}

// fsInitFn is called indirectly: the linker's nosplit check starts afresh
// behind an indirect call, and fsReady sits deep in many chains.
var fsInitFn = fsInit

//go:nosplit
func fsReady() {
	if !fsInited {
		fsInitFn()
	}
}

//go:nosplit
func strAddr(s string) (uintptr, uintptr) {
	return uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(len(s))
}

//go:nosplit
func mkdirIn(dir uint32, name string, perm uint32) uint32 {
	i := ialloc(sIFDIR | perm)
	n := ip(i)
	n.nlink = 2
	n.parent = dir
	a, l := strAddr(name)
	dirAdd(dir, a, l, i)
	ip(dir).nlink++
	return i
}

// mkdev makes a character device; in /dev when dir is not 0.
//
//go:nosplit
func mkdev(dir uint32, rdev uint32, perm uint32) uint32 {
	i := ialloc(sIFCHR | perm)
	ip(i).rdev = rdev
	if dir != 0 {
		var name string
		switch rdev {
		case devNull:
			name = "null"
		case devZero:
			name = "zero"
		case devRandom:
			name = "random"
		default:
			name = "urandom"
		}
		a, l := strAddr(name)
		dirAdd(dir, a, l, i)
	}
	return i
}

//go:nosplit
func linkConsole(dir, ino uint32, name string) {
	a, l := strAddr(name)
	if dirAdd(dir, a, l, ino) == 0 {
		ip(ino).nlink++
	}
}

//go:nosplit
func symlinkIn(dir uint32, name, target string) {
	i := ialloc(sIFLNK | 0o777)
	ta, tl := strAddr(target)
	fileWrite(ip(i), ta, tl, 0)
	a, l := strAddr(name)
	dirAdd(dir, a, l, i)
}

// Path walking. The path is copied into pathBuf; a symlink met on the way
// is spliced in (linkBuf is the scratch for that). The result is left in
// the lk* variables: the directory holding the last component, the
// component's inode (0: it does not exist, which is no error here) and its
// name in pathBuf.
var (
	pathBuf   [maxPathLen + 1]byte
	linkBuf   [maxPathLen + 1]byte
	lkParent  uint32
	lkIno     uint32
	lkName    uintptr // address of the last component's name in pathBuf
	lkNameLen uintptr
	lkSlash   bool // the path ends in '/'
	pathLen   uintptr
)

// walk flags.
const (
	wFollow = 1 << iota // follow a symlink in the last component
	wEmpty              // an empty path means dirfd itself (AT_EMPTY_PATH)
	wCreate             // the last component is to be created: never follow it, even before a '/'
)

const atFdcwd = -100

// walk resolves the path at the program's address path relative to dirfd.
// It returns 0 or a negative errno (EFAULT when the path runs into memory
// that is not the program's before its NUL).
//
//go:nosplit
func walk(dirfd int64, path uintptr, flags int) int64 {
	fsReady()
	r := strFromUser(uintptr(unsafe.Pointer(&pathBuf[0])), path, maxPathLen)
	if r < 0 {
		return r
	}
	n := uintptr(r)
	pathLen = n
	start := rootIno
	if n == 0 || pathBuf[0] != '/' {
		if dirfd == atFdcwd && cwdData != 0 && n > 0 {
			return walkToData(cwdData, 0)
		}
		if dirfd == atFdcwd {
			start = cwdIno
		} else {
			of := getFile(uint64(dirfd))
			if of == nil {
				return -eBADF
			}
			if of.kind == fdData && (n > 0 || flags&wEmpty != 0) {
				return walkToData(of.count, 0) // datafile.go
			}
			if n == 0 && flags&wEmpty != 0 {
				if of.ino == 0 {
					return -eBADF // a pipe or eventfd: callers handle those first
				}
				lkParent, lkIno, lkNameLen, lkSlash = of.ino, of.ino, 0, false
				return 0
			}
			if of.ino == 0 || !isDir(of.ino) {
				return -eNOTDIR
			}
			start = of.ino
		}
	}
	if n == 0 {
		if flags&wEmpty != 0 {
			lkParent, lkIno, lkNameLen, lkSlash = start, start, 0, false
			return 0
		}
		return -eNOENT
	}
	return walkFrom(start, flags)
}

//go:nosplit
func walkFrom(cur uint32, flags int) int64 {
	i := uintptr(0)
	links := 0
	base := uintptr(unsafe.Pointer(&pathBuf[0]))
	for {
		n := pathLen
		for i < n && pathBuf[i] == '/' {
			i++
		}
		if i == n { // "/" or a path ending in "/" after a symlink splice
			lkParent, lkIno, lkNameLen, lkSlash = cur, cur, 0, true
			return 0
		}
		s := i
		for i < n && pathBuf[i] != '/' {
			i++
		}
		clen := i - s
		if clen > maxNameLen {
			return -eNAMETOOLONG
		}
		k := i
		for k < n && pathBuf[k] == '/' {
			k++
		}
		last := k == n
		slash := i < n
		if !isDir(cur) {
			return -eNOTDIR
		}
		var next uint32
		switch {
		case clen == 1 && pathBuf[s] == '.':
			next = cur
		case clen == 2 && pathBuf[s] == '.' && pathBuf[s+1] == '.':
			next = ip(cur).parent
		default:
			next = dirLookup(cur, base+s, clen)
		}
		if next == 0 {
			if last {
				lkParent, lkIno, lkName, lkNameLen, lkSlash = cur, 0, base+s, clen, slash
				return 0
			}
			return -eNOENT
		}
		if isDataMount(next) {
			return walkToData(0, k) // the rest is the persistent file system's
		}
		if isLink(next) && (!last || flags&wCreate == 0 && (slash || flags&wFollow != 0)) {
			links++
			if links > maxSymlinks {
				return -eLOOP
			}
			ln := ip(next)
			tl := uintptr(ln.size)
			rest := n - i
			if tl+rest > maxPathLen {
				return -eNAMETOOLONG
			}
			fileRead(ln, uintptr(unsafe.Pointer(&linkBuf[0])), tl, 0)
			copy(linkBuf[tl:tl+rest], pathBuf[i:n])
			copy(pathBuf[:tl+rest], linkBuf[:tl+rest])
			pathLen = tl + rest
			i = 0
			if tl > 0 && pathBuf[0] == '/' {
				cur = rootIno
			}
			continue
		}
		if last {
			if slash && !isDir(next) && flags&wCreate == 0 {
				return -eNOTDIR
			}
			lkParent, lkIno, lkName, lkNameLen, lkSlash = cur, next, base+s, clen, slash
			return 0
		}
		cur = next
	}
}

// lkDot reports whether the last component was "." or "..".
//
//go:nosplit
func lkDot() bool {
	if lkNameLen == 0 {
		return true
	}
	b := userBytes(lkName, lkNameLen)
	return b[0] == '.' && (lkNameLen == 1 || lkNameLen == 2 && b[1] == '.')
}

// Directories hold fixed-size entries, 15 to a page; slot numbers are
// entry positions (inode.size counts slots). A free slot has ino 0.
const (
	direntSize   = 264
	direntsPage  = 15
	direntNameAt = 8
)

type dirent struct {
	ino  uint32
	nlen uint16
	typ  uint16
	name [256]byte
}

var _ [direntSize - unsafe.Sizeof(dirent{})]byte

//go:nosplit
func slotAt(d *inode, s uintptr, alloc bool) *dirent {
	pa := blockAddr(d, s/direntsPage, alloc)
	if pa == 0 {
		return nil
	}
	return (*dirent)(ptr(pa + (s%direntsPage)*direntSize))
}

//go:nosplit
func nameEq(e *dirent, name, nlen uintptr) bool {
	if uintptr(e.nlen) != nlen {
		return false
	}
	b := userBytes(name, nlen)
	for i := range b {
		if e.name[i] != b[i] {
			return false
		}
	}
	return true
}

// dirSlot finds the slot of name in directory d, or -1.
//
//go:nosplit
func dirSlot(d uint32, name, nlen uintptr) int64 {
	n := ip(d)
	for s := uintptr(0); s < uintptr(n.size); s++ {
		e := slotAt(n, s, false)
		if e != nil && e.ino != 0 && nameEq(e, name, nlen) {
			return int64(s)
		}
	}
	return -1
}

//go:nosplit
func dirLookup(d uint32, name, nlen uintptr) uint32 {
	if ip(d).rdev == devProcFD {
		return procFDLookup(name, nlen)
	}
	s := dirSlot(d, name, nlen)
	if s < 0 {
		return 0
	}
	return slotAt(ip(d), uintptr(s), false).ino
}

// procFDLookup resolves /proc/self/fd/N straight to the open file's inode.
//
//go:nosplit
func procFDLookup(name, nlen uintptr) uint32 {
	b := userBytes(name, nlen)
	fd := uint64(0)
	for _, c := range b {
		if c < '0' || c > '9' || fd > maxFDs {
			return 0
		}
		fd = fd*10 + uint64(c-'0')
	}
	of := getFile(fd)
	if of == nil {
		return 0
	}
	return of.ino
}

// dirAdd adds an entry; 0 or a negative errno.
//
//go:nosplit
func dirAdd(d uint32, name, nlen uintptr, ino uint32) int64 {
	if nlen > maxNameLen {
		return -eNAMETOOLONG
	}
	n := ip(d)
	var e *dirent
	for s := uintptr(0); s < uintptr(n.size); s++ {
		if x := slotAt(n, s, false); x == nil || x.ino == 0 {
			e = slotAt(n, s, true)
			break
		}
	}
	if e == nil {
		e = slotAt(n, uintptr(n.size), true)
		if e == nil {
			return -eNOSPC
		}
		n.size++
	}
	e.ino = ino
	e.nlen = uint16(nlen)
	copy(e.name[:nlen], userBytes(name, nlen))
	n.nents++
	t := fsNow()
	n.mtime, n.ctime = t, t
	return 0
}

// dirRemove removes the entry for name from d (it must exist).
//
//go:nosplit
func dirRemove(d uint32, name, nlen uintptr) {
	s := dirSlot(d, name, nlen)
	if s < 0 {
		return
	}
	n := ip(d)
	slotAt(n, uintptr(s), false).ino = 0
	n.nents--
	t := fsNow()
	n.mtime, n.ctime = t, t
}

// dropLink removes one link to ino (its directory entry is already gone).
//
//go:nosplit
func dropLink(ino uint32) {
	n := ip(ino)
	if n.mode&sIFMT == sIFDIR {
		n.nlink = 0
	} else if n.nlink > 0 {
		n.nlink--
	}
	n.ctime = fsNow()
	iput(ino)
}

// dtype maps a mode to a getdents d_type.
//
//go:nosplit
func dtype(mode uint32) byte {
	return byte(mode & sIFMT >> 12)
}
