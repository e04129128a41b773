package kernel

import "unsafe"

// The file system's system calls (path names, metadata, directories).

// *at flags (linux/fcntl.h).
const (
	atSymlinkNofollow = 0x100
	atRemovedir       = 0x200
	atSymlinkFollow   = 0x400
	atEmptyPath       = 0x1000
	renameNoreplace   = 1
	utimeNow          = 1<<30 - 1
	utimeOmit         = 1<<30 - 2
)

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
func fillStat(ino uint32, st *statT) {
	n := ip(ino)
	*st = statT{}
	st.dev = fsDev
	st.ino = uint64(ino)
	st.nlink = uint64(n.nlink)
	st.mode = n.mode
	st.uid, st.gid = n.uid, n.gid
	st.blksize = pageSize
	switch n.mode & sIFMT {
	case sIFCHR:
		st.rdev = uint64(n.rdev)
		if n.rdev == devConsoleErr {
			st.rdev = devConsole
		}
	case sIFBLK:
		st.rdev = uint64(n.rdev)
		st.size = vdaBytes() // Linux reports 0 here; BLKGETSIZE64 agrees
	case sIFDIR:
		st.size = pageSize
	default:
		st.size = n.size
	}
	st.blocks = (st.size + 511) / 512
	st.atime.set(n.atime)
	st.mtime.set(n.mtime)
	st.ctime.set(n.ctime)
}

// fstatFile fills st for an open file description.
//
//go:nosplit
func fstatFile(o *ofile, st *statT) {
	*st = statT{}
	kindOf(o).stat(o, st)
}

// statBuf is where a stat is built before it is copied to the program
// (too big for the nosplit stack budget; one call at a time).
var statBuf statT

// putStat copies statBuf to the program's buf.
//
//go:nosplit
func putStat(buf uintptr) int64 {
	if !copyOut(buf, unsafe.Pointer(&statBuf), unsafe.Sizeof(statBuf)) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysFstat(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	fstatFile(o, &statBuf)
	return putStat(uintptr(f.rsi))
}

// emptyPath reports whether path is "" (for AT_EMPTY_PATH); r is -EFAULT
// when path is not the program's memory.
//
//go:nosplit
func emptyPath(path uintptr) (empty bool, r int64) {
	var c byte
	if !copyIn(unsafe.Pointer(&c), path, 1) {
		return false, -eFAULT
	}
	return c == 0, 0
}

//go:nosplit
func statAt(dirfd int64, path, buf uintptr, flags uint64) int64 {
	if flags&atEmptyPath != 0 && path != 0 {
		empty, r := emptyPath(path)
		if r < 0 {
			return r
		}
		if empty {
			if dirfd == atFdcwd {
				fillStat(cwdIno, &statBuf)
				return putStat(buf)
			}
			o := getFile(uint64(dirfd))
			if o == nil {
				return -eBADF
			}
			fstatFile(o, &statBuf)
			return putStat(buf)
		}
	}
	wf := wFollow
	if flags&atSymlinkNofollow != 0 {
		wf = 0
	}
	if r := dataWalk(dirfd, path, wf); r == walkData {
		if r = dataStat(flags & atSymlinkNofollow); r < 0 { // datafile.go
			return r
		}
		return putStat(buf)
	} else if r < 0 {
		return r
	}
	if lkIno == 0 {
		return -eNOENT
	}
	fillStat(lkIno, &statBuf)
	return putStat(buf)
}

//go:nosplit
func sysStat(f *sysFrame) int64 { return statAt(atFdcwd, uintptr(f.rdi), uintptr(f.rsi), 0) }

//go:nosplit
func sysLstat(f *sysFrame) int64 {
	return statAt(atFdcwd, uintptr(f.rdi), uintptr(f.rsi), atSymlinkNofollow)
}

//go:nosplit
func sysNewfstatat(f *sysFrame) int64 {
	return statAt(int64(f.rdi), uintptr(f.rsi), uintptr(f.rdx), f.r10)
}

//go:nosplit
func sysENOSYS(f *sysFrame) int64 { return -eNOSYS }

//go:nosplit
func sysEINVAL(f *sysFrame) int64 { return -eINVAL }

//go:nosplit
func sysFallocate(f *sysFrame) int64 { return -eOPNOTSUPP }

// open.

//go:nosplit
func doOpen(dirfd int64, path uintptr, flags uint64, mode uint32) int64 {
	if flags&oTmpfile != 0 {
		return -eOPNOTSUPP
	}
	if flags&oAccmode == oAccmode {
		return -eINVAL
	}
	wf := wFollow
	if flags&oNofollow != 0 || flags&(oCreat|oExcl) == oCreat|oExcl {
		wf = 0
	}
	if r := dataWalk(dirfd, path, wf); r == walkData {
		return dataOpen(flags, mode) // datafile.go
	} else if r < 0 {
		return r
	}
	ino := lkIno
	if ino == 0 {
		if flags&oCreat == 0 {
			return -eNOENT
		}
		if lkSlash {
			return -eISDIR
		}
		ino = ialloc(sIFREG | mode&0o7777&^umaskBits)
		if ino == 0 {
			return -eNOSPC
		}
		if r := dirAdd(lkParent, lkName, lkNameLen, ino); r < 0 {
			dropLink(ino)
			return r
		}
	} else {
		if flags&(oCreat|oExcl) == oCreat|oExcl {
			return -eEXIST
		}
		n := ip(ino)
		switch n.mode & sIFMT {
		case sIFLNK:
			if flags&oPath == 0 {
				return -eLOOP
			}
		case sIFDIR:
			if flags&oAccmode != oRdonly || flags&oCreat != 0 {
				return -eISDIR
			}
		case sIFREG:
			if flags&oTrunc != 0 && flags&oAccmode != oRdonly && n.size != 0 {
				setSize(n, 0)
			}
		}
		if flags&oDirectory != 0 && n.mode&sIFMT != sIFDIR {
			return -eNOTDIR
		}
		if n.mode&sIFMT == sIFIFO && flags&oPath == 0 {
			return openFIFO(ino, flags)
		}
		if n.mode&sIFMT == sIFBLK && flags&oPath == 0 {
			return openBlk(ino, flags) // blkdev.go
		}
	}
	return openInode(ino, flags)
}

//go:nosplit
func sysOpen(f *sysFrame) int64 {
	return doOpen(atFdcwd, uintptr(f.rdi), f.rsi, uint32(f.rdx))
}

//go:nosplit
func sysCreat(f *sysFrame) int64 {
	return doOpen(atFdcwd, uintptr(f.rdi), oCreat|oWronly|oTrunc, uint32(f.rsi))
}

//go:nosplit
func sysOpenat(f *sysFrame) int64 {
	return doOpen(int64(int32(f.rdi)), uintptr(f.rsi), f.rdx, uint32(f.r10))
}

// Directories.

// direntBuf holds the getdents64 record being built.
var direntBuf [(19 + maxNameLen + 1 + 7) &^ 7]byte

//go:nosplit
func sysGetdents64(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	if o.kind == fdData {
		return dataGetdents(o, uintptr(f.rsi), uintptr(f.rdx)) // datafile.go
	}
	if o.kind != fdInode || !isDir(o.ino) {
		return -eNOTDIR
	}
	d := ip(o.ino)
	buf, count := uintptr(f.rsi), uintptr(f.rdx)
	w := uintptr(0)
	for {
		pos := o.off
		var ino uint32
		var name, nlen uintptr
		typ := byte(sIFDIR >> 12)
		switch {
		case pos == 0:
			ino = o.ino
			name, nlen = strAddr(".")
		case pos == 1:
			ino = d.parent
			name, nlen = strAddr("..")
		default:
			s := uintptr(pos - 2)
			if s >= uintptr(d.size) {
				return int64(w)
			}
			e := slotAt(d, s, false)
			if e == nil || e.ino == 0 {
				o.off++
				continue
			}
			ino = e.ino
			name, nlen = uintptr(unsafe.Pointer(&e.name[0])), uintptr(e.nlen)
			typ = dtype(ip(ino).mode)
		}
		reclen := (19 + nlen + 1 + 7) &^ 7
		if w+reclen > count {
			if w == 0 {
				return -eINVAL
			}
			return int64(w)
		}
		// Built in the kernel, then copied: an entry the program's buffer
		// cannot take ends the call (EFAULT if it is the first).
		r := uintptr(unsafe.Pointer(&direntBuf[0]))
		clear(direntBuf[:reclen])
		*u64at(r) = uint64(ino)
		*u64at(r + 8) = uint64(pos + 1)
		*(*uint16)(ptr(r + 16)) = uint16(reclen)
		*(*byte)(ptr(r + 18)) = typ
		copy(direntBuf[19:19+nlen], userBytes(name, nlen))
		if !copyOut(buf+w, unsafe.Pointer(&direntBuf[0]), reclen) {
			if w == 0 {
				return -eFAULT
			}
			return int64(w)
		}
		w += reclen
		o.off++
	}
}

// lookupNew resolves path for creating a new entry: it leaves the parent
// and name in lkParent/lkName, or returns EEXIST, or ENOENT when the parent
// was removed or is /proc/self/fd (or, unless slashOK, the path ends in a
// slash: only directories may be named so).
//
//go:nosplit
func lookupNew(dirfd int64, path uintptr, slashOK bool) int64 {
	if r := dataWalk(dirfd, path, wCreate); r < 0 {
		return r // walkData too: the caller makes the call
	}
	if lkIno != 0 {
		return -eEXIST
	}
	if lkSlash && !slashOK || ip(lkParent).rdev == devProcFD || ip(lkParent).nlink == 0 {
		return -eNOENT
	}
	return 0
}

//go:nosplit
func doMkdir(dirfd int64, path uintptr, mode uint32) int64 {
	if r := lookupNew(dirfd, path, true); r == walkData {
		dataArgs.mode = mode & 0o7777 &^ umaskBits
		return dataRun(dMkdir)
	} else if r < 0 {
		return r
	}
	i := ialloc(sIFDIR | mode&0o7777&^umaskBits)
	if i == 0 {
		return -eNOSPC
	}
	n := ip(i)
	n.nlink = 2
	n.parent = lkParent
	if r := dirAdd(lkParent, lkName, lkNameLen, i); r < 0 {
		n.nlink = 0
		iput(i)
		return r
	}
	ip(lkParent).nlink++
	return 0
}

//go:nosplit
func sysMkdir(f *sysFrame) int64 { return doMkdir(atFdcwd, uintptr(f.rdi), uint32(f.rsi)) }

//go:nosplit
func sysMkdirat(f *sysFrame) int64 {
	return doMkdir(int64(int32(f.rdi)), uintptr(f.rsi), uint32(f.rdx))
}

//go:nosplit
func doUnlink(dirfd int64, path uintptr, flags uint64) int64 {
	if flags&^atRemovedir != 0 {
		return -eINVAL
	}
	if r := dataWalk(dirfd, path, 0); r == walkData {
		dataArgs.flags = uint32(flags)
		return dataRun(dUnlink)
	} else if r < 0 {
		return r
	}
	if lkIno == 0 {
		return -eNOENT
	}
	if ip(lkParent).rdev == devProcFD {
		return -ePERM
	}
	if flags&atRemovedir != 0 {
		if !isDir(lkIno) {
			return -eNOTDIR
		}
		if lkIno == rootIno {
			return -eBUSY
		}
		if lkDot() {
			if lkNameLen == 2 {
				return -eNOTEMPTY
			}
			return -eINVAL
		}
		if ip(lkIno).nents > 0 {
			return -eNOTEMPTY
		}
		dirRemove(lkParent, lkName, lkNameLen)
		ip(lkParent).nlink--
		dropLink(lkIno)
		return 0
	}
	if isDir(lkIno) {
		return -eISDIR
	}
	dirRemove(lkParent, lkName, lkNameLen)
	dropLink(lkIno)
	return 0
}

//go:nosplit
func sysUnlink(f *sysFrame) int64 { return doUnlink(atFdcwd, uintptr(f.rdi), 0) }

//go:nosplit
func sysRmdir(f *sysFrame) int64 { return doUnlink(atFdcwd, uintptr(f.rdi), atRemovedir) }

//go:nosplit
func sysUnlinkat(f *sysFrame) int64 {
	return doUnlink(int64(int32(f.rdi)), uintptr(f.rsi), f.rdx)
}

// renameName keeps the old name while the new path is walked.
var renameName [maxNameLen + 1]byte

//go:nosplit
func doRename(ofd int64, op uintptr, nfd int64, np uintptr, flags uint64) int64 {
	if flags&^renameNoreplace != 0 {
		return -eINVAL
	}
	if r := dataWalk(ofd, op, 0); r == walkData {
		return dataRename(nfd, np, flags) // datafile.go
	} else if r < 0 {
		return r
	}
	if lkIno == 0 {
		return -eNOENT
	}
	if lkDot() {
		return -eBUSY
	}
	oldP, oldI, oSlash := lkParent, lkIno, lkSlash
	oldLen := lkNameLen
	copy(renameName[:oldLen], userBytes(lkName, oldLen))
	if r := walk(nfd, np, 0); r == walkData {
		return -eXDEV
	} else if r < 0 {
		return r
	}
	if lkDot() {
		return -eBUSY
	}
	newP, newI := lkParent, lkIno
	if ip(oldP).rdev == devProcFD || ip(newP).rdev == devProcFD {
		return -ePERM
	}
	if (oSlash || lkSlash) && !isDir(oldI) {
		return -eNOTDIR
	}
	if newI == oldI {
		return 0
	}
	if newI != 0 && flags&renameNoreplace != 0 {
		return -eEXIST
	}
	dir := isDir(oldI)
	if dir {
		if newI != 0 {
			if !isDir(newI) {
				return -eNOTDIR
			}
			if ip(newI).nents > 0 {
				return -eNOTEMPTY
			}
		}
		for p := newP; ; p = ip(p).parent {
			if p == oldI {
				return -eINVAL
			}
			if p == rootIno {
				break
			}
		}
	} else if newI != 0 && isDir(newI) {
		return -eISDIR
	}
	if newI != 0 {
		dirRemove(newP, lkName, lkNameLen)
		if isDir(newI) {
			ip(newP).nlink--
		}
		dropLink(newI)
	}
	if r := dirAdd(newP, lkName, lkNameLen, oldI); r < 0 {
		return r
	}
	dirRemove(oldP, uintptr(unsafe.Pointer(&renameName[0])), oldLen)
	if dir {
		ip(oldI).parent = newP
		ip(oldP).nlink--
		ip(newP).nlink++
	}
	ip(oldI).ctime = fsNow()
	return 0
}

//go:nosplit
func sysRename(f *sysFrame) int64 {
	return doRename(atFdcwd, uintptr(f.rdi), atFdcwd, uintptr(f.rsi), 0)
}

//go:nosplit
func sysRenameat(f *sysFrame) int64 {
	return doRename(int64(int32(f.rdi)), uintptr(f.rsi), int64(int32(f.rdx)), uintptr(f.r10), 0)
}

//go:nosplit
func sysRenameat2(f *sysFrame) int64 {
	return doRename(int64(int32(f.rdi)), uintptr(f.rsi), int64(int32(f.rdx)), uintptr(f.r10), f.r8)
}

// Links.

//go:nosplit
func doLink(ofd int64, op uintptr, nfd int64, np uintptr, flags uint64) int64 {
	if flags&^(atSymlinkFollow|atEmptyPath) != 0 {
		return -eINVAL
	}
	wf := 0
	if flags&atSymlinkFollow != 0 {
		wf |= wFollow
	}
	if flags&atEmptyPath != 0 {
		wf |= wEmpty
	}
	if r := walk(ofd, op, wf); r == walkData {
		if r = walk(nfd, np, wCreate); r == walkData {
			return -ePERM // no hard links on /data
		} else if r < 0 {
			return r
		}
		return -eXDEV
	} else if r < 0 {
		return r
	}
	oldI := lkIno
	if oldI == 0 {
		return -eNOENT
	}
	if isDir(oldI) {
		return -ePERM
	}
	if r := walk(nfd, np, wCreate); r == walkData {
		return -eXDEV
	} else if r < 0 {
		return r
	}
	if lkIno != 0 {
		return -eEXIST
	}
	if lkSlash {
		return -eNOENT
	}
	if ip(lkParent).rdev == devProcFD || ip(lkParent).nlink == 0 {
		return -eNOENT
	}
	if r := dirAdd(lkParent, lkName, lkNameLen, oldI); r < 0 {
		return r
	}
	n := ip(oldI)
	n.nlink++
	n.ctime = fsNow()
	return 0
}

//go:nosplit
func sysLink(f *sysFrame) int64 {
	return doLink(atFdcwd, uintptr(f.rdi), atFdcwd, uintptr(f.rsi), 0)
}

//go:nosplit
func sysLinkat(f *sysFrame) int64 {
	return doLink(int64(int32(f.rdi)), uintptr(f.rsi), int64(int32(f.rdx)), uintptr(f.r10), f.r8)
}

//go:nosplit
func cstrlen(p uintptr, max uintptr) uintptr {
	b := userBytes(p, max+1)
	for i := uintptr(0); i <= max; i++ {
		if b[i] == 0 {
			return i
		}
	}
	return max + 1
}

// targetBuf holds a symlink's target while the link's path is walked.
var targetBuf [maxPathLen + 1]byte

//go:nosplit
func doSymlink(target uintptr, nfd int64, np uintptr) int64 {
	ta := uintptr(unsafe.Pointer(&targetBuf[0]))
	r := strFromUser(ta, target, maxPathLen)
	if r < 0 {
		return r
	}
	tl := uintptr(r)
	if tl == 0 {
		return -eNOENT
	}
	if tl >= maxPathLen {
		return -eNAMETOOLONG
	}
	if r := lookupNew(nfd, np, false); r == walkData {
		return dataSymlink(tl) // datafile.go
	} else if r < 0 {
		return r
	}
	i := ialloc(sIFLNK | 0o777)
	if i == 0 {
		return -eNOSPC
	}
	if r := fileWrite(ip(i), ta, tl, 0); r < 0 {
		dropLink(i)
		return r
	}
	if r := dirAdd(lkParent, lkName, lkNameLen, i); r < 0 {
		dropLink(i)
		return r
	}
	return 0
}

//go:nosplit
func sysSymlink(f *sysFrame) int64 { return doSymlink(uintptr(f.rdi), atFdcwd, uintptr(f.rsi)) }

//go:nosplit
func sysSymlinkat(f *sysFrame) int64 {
	return doSymlink(uintptr(f.rdi), int64(int32(f.rsi)), uintptr(f.rdx))
}

//go:nosplit
func doReadlink(dirfd int64, path, buf uintptr, size int64) int64 {
	if size <= 0 {
		return -eINVAL
	}
	if r := dataWalk(dirfd, path, 0); r == walkData {
		return dataReadlink(buf, size) // datafile.go
	} else if r < 0 {
		return r
	}
	if lkIno == 0 {
		return -eNOENT
	}
	if !isLink(lkIno) {
		return -eINVAL
	}
	return fileRead(ip(lkIno), buf, uintptr(size), 0)
}

//go:nosplit
func sysReadlink(f *sysFrame) int64 {
	return doReadlink(atFdcwd, uintptr(f.rdi), uintptr(f.rsi), int64(f.rdx))
}

//go:nosplit
func sysReadlinkat(f *sysFrame) int64 {
	return doReadlink(int64(int32(f.rdi)), uintptr(f.rsi), uintptr(f.rdx), int64(f.r10))
}

// Metadata.

// inodeAt resolves dirfd+path (flags: atSymlinkNofollow, atEmptyPath) to
// an inode, or a negative errno. A NULL path means dirfd itself.
//
//go:nosplit
func inodeAt(dirfd int64, path uintptr, flags uint64) int64 {
	self := path == 0
	if !self && flags&atEmptyPath != 0 {
		empty, r := emptyPath(path)
		if r < 0 {
			return r
		}
		self = empty
	}
	if self {
		if dirfd == atFdcwd {
			return int64(cwdIno)
		}
		o := getFile(uint64(dirfd))
		if o == nil {
			return -eBADF
		}
		if o.kind == fdData {
			return dataFD(o) // inoData: datafile.go
		}
		if o.kind != fdInode {
			return -eBADF
		}
		return int64(o.ino)
	}
	wf := wFollow
	if flags&atSymlinkNofollow != 0 {
		wf = 0
	}
	if r := dataWalk(dirfd, path, wf); r == walkData {
		return inoData
	} else if r < 0 {
		return r
	}
	if lkIno == 0 {
		return -eNOENT
	}
	return int64(lkIno)
}

//go:nosplit
func inodeOfFD(fd uint64) int64 {
	o := getFile(fd)
	if o == nil {
		return -eBADF
	}
	if o.kind == fdData {
		return dataFD(o) // inoData: datafile.go
	}
	if o.kind != fdInode {
		return -eBADF
	}
	return int64(o.ino)
}

//go:nosplit
func setMode(i int64, mode uint64) int64 {
	if i == inoData {
		dataArgs.mode = uint32(mode) & 0o7777
		return dataRun(dChmod)
	}
	if i < 0 {
		return i
	}
	n := ip(uint32(i))
	n.mode = n.mode&sIFMT | uint32(mode)&0o7777
	n.ctime = fsNow()
	return 0
}

//go:nosplit
func sysChmod(f *sysFrame) int64 { return setMode(inodeAt(atFdcwd, uintptr(f.rdi), 0), f.rsi) }

//go:nosplit
func sysFchmod(f *sysFrame) int64 { return setMode(inodeOfFD(f.rdi), f.rsi) }

//go:nosplit
func sysFchmodat(f *sysFrame) int64 {
	return setMode(inodeAt(int64(int32(f.rdi)), uintptr(f.rsi), 0), f.rdx)
}

// sysFchmodat2 is fchmodat with flags (Linux 6.6): AT_SYMLINK_NOFOLLOW
// changes a symlink's own mode, which Linux refuses (EOPNOTSUPP), and
// AT_EMPTY_PATH the descriptor's file. Go's os.Root.Chmod needs it: its
// fallback goes through /proc/self/fd, which does not name a /data file.
//
//go:nosplit
func sysFchmodat2(f *sysFrame) int64 {
	flags := f.r10
	if flags&^(atSymlinkNofollow|atEmptyPath) != 0 {
		return -eINVAL
	}
	i := inodeAt(int64(int32(f.rdi)), uintptr(f.rsi), flags)
	if i > 0 && i != inoData && ip(uint32(i)).mode&sIFMT == sIFLNK {
		return -eOPNOTSUPP
	}
	return setMode(i, f.rdx) // on /data, the service refuses a symlink
}

//go:nosplit
func setOwner(i int64, uid, gid uint64) int64 {
	if i == inoData {
		// /data keeps no owners: every file is root's. The call still
		// fails as Linux's would on a missing file or "file/".
		dataArgs.mode = 0 // access(F_OK)
		return dataRun(dAccess)
	}
	if i < 0 {
		return i
	}
	n := ip(uint32(i))
	if uint32(uid) != ^uint32(0) {
		n.uid = uint32(uid)
	}
	if uint32(gid) != ^uint32(0) {
		n.gid = uint32(gid)
	}
	n.ctime = fsNow()
	return 0
}

//go:nosplit
func sysChown(f *sysFrame) int64 {
	return setOwner(inodeAt(atFdcwd, uintptr(f.rdi), 0), f.rsi, f.rdx)
}

//go:nosplit
func sysLchown(f *sysFrame) int64 {
	return setOwner(inodeAt(atFdcwd, uintptr(f.rdi), atSymlinkNofollow), f.rsi, f.rdx)
}

//go:nosplit
func sysFchown(f *sysFrame) int64 { return setOwner(inodeOfFD(f.rdi), f.rsi, f.rdx) }

//go:nosplit
func sysFchownat(f *sysFrame) int64 {
	return setOwner(inodeAt(int64(int32(f.rdi)), uintptr(f.rsi), f.r8), f.rdx, f.r10)
}

// setTimes sets atime and mtime (ns since the epoch; utimeOmit keeps one).
//
//go:nosplit
func setTimes(i int64, a, m int64) int64 {
	if i == inoData {
		dataArgs.a, dataArgs.m = a, m
		return dataRun(dUtimes)
	}
	if i < 0 {
		return i
	}
	n := ip(uint32(i))
	if a != utimeOmit {
		n.atime = a
	}
	if m != utimeOmit {
		n.mtime = m
	}
	n.ctime = fsNow()
	return 0
}

// tsArg converts a struct timespec argument of utimensat.
//
//go:nosplit
func tsArg(ts *timespec) (int64, bool) {
	switch ts.nsec {
	case utimeNow:
		return fsNow(), true
	case utimeOmit:
		return utimeOmit, true
	}
	if ts.nsec < 0 || ts.nsec >= 1e9 {
		return 0, false
	}
	return ts.ns(), true
}

//go:nosplit
func sysUtimensat(f *sysFrame) int64 {
	a, m := fsNow(), fsNow()
	if t := uintptr(f.rdx); t != 0 {
		var ts [2]timespec
		if !copyIn(unsafe.Pointer(&ts), t, 32) {
			return -eFAULT
		}
		var ok1, ok2 bool
		a, ok1 = tsArg(&ts[0])
		m, ok2 = tsArg(&ts[1])
		if !ok1 || !ok2 {
			return -eINVAL
		}
	}
	return setTimes(inodeAt(int64(int32(f.rdi)), uintptr(f.rsi), f.r10), a, m)
}

// timevals: utimes and futimesat take struct timeval[2] (sec, usec).
//
//go:nosplit
func tvTimes(tv uintptr) (a, m int64, ok bool) {
	if tv == 0 {
		return fsNow(), fsNow(), true
	}
	var t [2]timespec
	if !copyIn(unsafe.Pointer(&t), tv, 32) {
		return 0, 0, false
	}
	return t[0].sec*1e9 + t[0].nsec*1000, t[1].sec*1e9 + t[1].nsec*1000, true
}

//go:nosplit
func sysUtimes(f *sysFrame) int64 {
	a, m, ok := tvTimes(uintptr(f.rsi))
	if !ok {
		return -eFAULT
	}
	return setTimes(inodeAt(atFdcwd, uintptr(f.rdi), 0), a, m)
}

//go:nosplit
func sysFutimesat(f *sysFrame) int64 {
	a, m, ok := tvTimes(uintptr(f.rdx))
	if !ok {
		return -eFAULT
	}
	return setTimes(inodeAt(int64(int32(f.rdi)), uintptr(f.rsi), 0), a, m)
}

//go:nosplit
func sysUtime(f *sysFrame) int64 {
	a, m := fsNow(), fsNow()
	if t := uintptr(f.rsi); t != 0 {
		var ut [2]int64 // struct utimbuf: actime, modtime
		if !copyIn(unsafe.Pointer(&ut), t, 16) {
			return -eFAULT
		}
		a, m = ut[0]*1e9, ut[1]*1e9
	}
	return setTimes(inodeAt(atFdcwd, uintptr(f.rdi), 0), a, m)
}

//go:nosplit
func sysTruncate(f *sysFrame) int64 {
	i := inodeAt(atFdcwd, uintptr(f.rdi), 0)
	if i == inoData {
		dataArgs.off = int64(f.rsi)
		return dataRun(dTruncate)
	}
	if i < 0 {
		return i
	}
	n := ip(uint32(i))
	switch n.mode & sIFMT {
	case sIFDIR:
		return -eISDIR
	case sIFREG:
		return setSize(n, int64(f.rsi))
	}
	return -eINVAL
}

//go:nosplit
func sysFtruncate(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	if o.kind == fdData && o.flags&oAccmode != oRdonly {
		if r := dataFD(o); r != inoData {
			return r
		}
		dataArgs.off = int64(f.rsi)
		return dataRun(dTruncate)
	}
	if o.kind != fdInode || o.flags&oAccmode == oRdonly || ip(o.ino).mode&sIFMT != sIFREG {
		return -eINVAL
	}
	return setSize(ip(o.ino), int64(f.rsi))
}

//go:nosplit
func doAccess(dirfd int64, path uintptr, mode, flags uint64) int64 {
	if mode&^7 != 0 {
		return -eINVAL
	}
	i := inodeAt(dirfd, path, flags&(atSymlinkNofollow|atEmptyPath))
	if i == inoData {
		dataArgs.mode = uint32(mode)
		return dataRun(dAccess)
	}
	if i < 0 {
		return i
	}
	n := ip(uint32(i))
	if mode&1 != 0 && n.mode&sIFMT != sIFDIR && n.mode&0o111 == 0 {
		return -eACCES
	}
	return 0
}

//go:nosplit
func sysAccess(f *sysFrame) int64 { return doAccess(atFdcwd, uintptr(f.rdi), f.rsi, 0) }

//go:nosplit
func sysFaccessat(f *sysFrame) int64 {
	return doAccess(int64(int32(f.rdi)), uintptr(f.rsi), f.rdx, 0)
}

//go:nosplit
func sysFaccessat2(f *sysFrame) int64 {
	return doAccess(int64(int32(f.rdi)), uintptr(f.rsi), f.rdx, f.r10)
}

// The working directory.

//go:nosplit
func setCwd(i int64) int64 {
	if i == inoData {
		return dataChdir() // datafile.go
	}
	if i < 0 {
		return i
	}
	if !isDir(uint32(i)) {
		return -eNOTDIR
	}
	if cwdData != 0 {
		dataClosed(cwdData)
		cwdData = 0
	}
	ip(uint32(i)).opens++
	old := cwdIno
	cwdIno = uint32(i)
	ip(old).opens--
	iput(old)
	return 0
}

//go:nosplit
func sysChdir(f *sysFrame) int64 { return setCwd(inodeAt(atFdcwd, uintptr(f.rdi), 0)) }

//go:nosplit
func sysFchdir(f *sysFrame) int64 { return setCwd(inodeOfFD(f.rdi)) }

//go:nosplit
func sysGetcwd(f *sysFrame) int64 {
	fsReady()
	if cwdData != 0 {
		return dataGetcwd(uintptr(f.rdi), uintptr(f.rsi)) // datafile.go
	}
	pos := uintptr(len(linkBuf))
	i := cwdIno
	if ip(i).nlink == 0 {
		return -eNOENT
	}
	for i != rootIno {
		p := ip(i).parent
		d := ip(p)
		var e *dirent
		for s := uintptr(0); s < uintptr(d.size); s++ {
			if x := slotAt(d, s, false); x != nil && x.ino == i {
				e = x
				break
			}
		}
		if e == nil {
			return -eNOENT
		}
		if pos < uintptr(e.nlen)+1 {
			return -eNAMETOOLONG // Go's Getwd then walks ".." itself
		}
		pos -= uintptr(e.nlen)
		copy(linkBuf[pos:], e.name[:e.nlen])
		pos--
		linkBuf[pos] = '/'
		i = p
	}
	if pos == uintptr(len(linkBuf)) {
		pos--
		linkBuf[pos] = '/'
	}
	need := uintptr(len(linkBuf)) - pos + 1
	if uintptr(f.rsi) < need {
		return -eRANGE
	}
	nul := byte(0)
	if !copyOut(uintptr(f.rdi), unsafe.Pointer(&linkBuf[pos]), need-1) || !copyOut(uintptr(f.rdi)+need-1, unsafe.Pointer(&nul), 1) {
		return -eFAULT
	}
	return int64(need)
}

//go:nosplit
func sysUmask(f *sysFrame) int64 {
	old := umaskBits
	umaskBits = uint32(f.rdi) & 0o777
	return int64(old)
}

// mknod: regular files and FIFOs (no devices).
//
//go:nosplit
func doMknod(dirfd int64, path uintptr, mode uint64) int64 {
	typ := uint32(mode) & sIFMT
	switch typ {
	case 0:
		typ = sIFREG
	case sIFREG, sIFIFO:
	default:
		return -ePERM
	}
	if r := lookupNew(dirfd, path, false); r == walkData {
		dataUnlock()
		return -ePERM // only open(O_CREAT) and mkdir create on /data
	} else if r < 0 {
		return r
	}
	i := ialloc(typ | uint32(mode)&0o7777&^umaskBits)
	if i == 0 {
		return -eNOSPC
	}
	if r := dirAdd(lkParent, lkName, lkNameLen, i); r < 0 {
		dropLink(i)
		return r
	}
	return 0
}

//go:nosplit
func sysMknod(f *sysFrame) int64 { return doMknod(atFdcwd, uintptr(f.rdi), f.rsi) }

//go:nosplit
func sysMknodat(f *sysFrame) int64 { return doMknod(int64(int32(f.rdi)), uintptr(f.rsi), f.rdx) }
