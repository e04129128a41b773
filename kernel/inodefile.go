package kernel

// Files of the file system (fs.go) opened by path: regular files,
// directories and character devices, the console among them. FIFOs are
// inodes too but open as pipe ends (pipe.go).

type inodeFile struct{ baseFile }

//go:nosplit
func (*inodeFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
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
	return -eINVAL
}

//go:nosplit
func (*inodeFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
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
	return -eINVAL
}

//go:nosplit
func (*inodeFile) stat(o *ofile, st *statT) {
	if !hostStat(o, st) {
		fillStat(o.ino, st)
	}
}

//go:nosplit
func (*inodeFile) ioctl(o *ofile, req, arg uint64) int64 {
	if isConsole(ip(o.ino)) {
		return consoleIoctl(o, req, arg)
	}
	return -eNOTTY
}

//go:nosplit
func isConsole(nd *inode) bool {
	return nd.mode&sIFMT == sIFCHR && (nd.rdev == devConsole || nd.rdev == devConsoleErr)
}

// ready: files and devices are always ready, as on Linux, except the
// console's input, which is not tracked (a read would block).
//
//go:nosplit
func (*inodeFile) ready(o *ofile) uint32 {
	if isConsole(ip(o.ino)) {
		return epollOut
	}
	return epollIn | epollOut
}

//go:nosplit
func (*inodeFile) pollable(o *ofile) bool { return isConsole(ip(o.ino)) }

//go:nosplit
func (*inodeFile) seek(o *ofile, off int64, whence uint64) int64 {
	nd := ip(o.ino)
	if nd.mode&sIFMT == sIFCHR {
		if nd.rdev == devConsole || nd.rdev == devConsoleErr {
			return -eSPIPE
		}
		return 0
	}
	switch whence {
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

//go:nosplit
func (*inodeFile) release(o *ofile) {
	ip(o.ino).opens--
	iput(o.ino)
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
