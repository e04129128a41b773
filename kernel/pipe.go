package kernel

import "unsafe"

// Pipes: a ring buffer in one page from the page allocator. Reads and
// writes block (waitPoll: every change wakes pollers and blocked peers)
// unless the end is non-blocking; a write with no reader left fails with
// EPIPE (no SIGPIPE yet).

const (
	maxPipes = 256
	pipeSize = pageSize
)

type pipeT struct {
	used    bool
	buf     uintptr
	rpos    uint64 // bytes ever read
	wpos    uint64 // bytes ever written
	readers int32
	writers int32
	gen     uint32 // bumped on every change, for edge-triggered epoll
	fifo    uint32 // the FIFO inode this pipe serves, or 0
	ropens  uint32 // FIFOs: opens for reading so far
	wopens  uint32 // FIFOs: opens for writing so far
}

var pipes [maxPipes]pipeT

//go:nosplit
func sysPipe2(f *sysFrame) int64 {
	flags := f.rsi
	if flags&^(oNonblock|oCloexec|0x4000 /* O_DIRECT */) != 0 {
		return -eINVAL
	}
	if !userOK(uintptr(f.rdi), 8) {
		return -eFAULT
	}
	pi := newPipe()
	if pi < 0 {
		return int64(pi)
	}
	p := &pipes[pi]
	rfd := allocFD(fdPipe, oRdonly|flags&(oNonblock|oCloexec))
	if rfd < 0 {
		freePage(p.buf)
		p.buf, p.used = 0, false
		return rfd
	}
	wfd := allocFD(fdPipe, oWronly|flags&(oNonblock|oCloexec))
	if wfd < 0 {
		ofiles[fds[rfd].of-1] = ofile{}
		fds[rfd] = fdent{}
		freePage(p.buf)
		p.buf, p.used = 0, false
		return wfd
	}
	p.readers, p.writers = 1, 1
	ofiles[fds[rfd].of-1].pipe = int32(pi)
	ofiles[fds[wfd].of-1].pipe = int32(pi)
	fdp := [2]int32{int32(rfd), int32(wfd)}
	if !copyOut(uintptr(f.rdi), unsafe.Pointer(&fdp), 8) {
		closeFD(uint64(rfd))
		closeFD(uint64(wfd))
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysPipe(f *sysFrame) int64 {
	g := sysFrame{rdi: f.rdi}
	return sysPipe2(&g)
}

//go:nosplit
func pipeChanged(p *pipeT) {
	p.gen++
	wakeAll(waitPoll)
}

//go:nosplit
func pipeClose(o *ofile) {
	p := &pipes[o.pipe]
	if o.flags&oAccmode != oWronly {
		p.readers--
	}
	if o.flags&oAccmode != oRdonly {
		p.writers--
	}
	pipeChanged(p)
	if p.readers == 0 && p.writers == 0 {
		freePage(p.buf)
		p.buf = 0
		p.used = false
		if p.fifo != 0 {
			// The last close of a FIFO discards its data.
			n := ip(p.fifo)
			n.fifo = 0
			n.opens--
			iput(p.fifo)
			p.fifo = 0
		}
	}
}

// newPipe takes a free pipe slot with a fresh buffer, or returns a
// negative errno.
//
//go:nosplit
func newPipe() int32 {
	for i := range pipes {
		p := &pipes[i]
		if !p.used {
			buf := allocPage()
			if buf == 0 {
				return -eNOMEM
			}
			p.used = true
			p.buf = buf
			p.rpos, p.wpos = 0, 0
			p.readers, p.writers = 0, 0
			p.fifo = 0
			p.ropens, p.wopens = 0, 0
			p.gen++
			return int32(i)
		}
	}
	return -eNFILE
}

// openFIFO opens FIFO inode ino: the first opener creates its pipe. A
// blocking open for reading waits for a writer and one for writing for a
// reader; a non-blocking open for writing with no reader fails (ENXIO).
//
//go:nosplit
func openFIFO(ino uint32, flags uint64) int64 {
	n := ip(ino)
	acc := flags & oAccmode
	if n.fifo == 0 {
		if acc == oWronly && flags&oNonblock != 0 {
			return -eNXIO
		}
		pi := newPipe()
		if pi < 0 {
			return int64(pi)
		}
		pipes[pi].fifo = ino
		n.fifo = pi + 1
		n.opens++ // the pipe keeps the inode
	}
	pi := n.fifo - 1
	p := &pipes[pi]
	if acc == oWronly && flags&oNonblock != 0 && p.readers == 0 {
		return -eNXIO
	}
	fd := allocFD(fdPipe, flags)
	if fd < 0 {
		if p.readers == 0 && p.writers == 0 {
			freePage(p.buf)
			p.buf, p.used, p.fifo = 0, false, 0
			n.fifo = 0
			n.opens--
		}
		return fd
	}
	o := &ofiles[fds[fd].of-1]
	o.pipe = pi
	o.ino = ino
	n.opens++
	if acc != oWronly {
		p.readers++
		p.ropens++
	}
	if acc != oRdonly {
		p.writers++
		p.wopens++
	}
	pipeChanged(p)
	if flags&oNonblock != 0 || acc == oRdwr {
		return fd
	}
	// Wait for a peer to have opened (it may have come and gone already
	// when this thread runs again, as with Linux's open counters).
	ro, wo := p.ropens, p.wopens
	if acc == oRdonly && p.writers > 0 || acc == oWronly && p.readers > 0 {
		return fd
	}
	for (acc == oRdonly && p.wopens == wo) || (acc == oWronly && p.ropens == ro) {
		switch blockHeld(o) {
		case -1: // closed meanwhile by another thread
			return -eBADF
		case wokeSignal:
			closeFD(uint64(fd))
			return -eINTR
		}
	}
	return fd
}

//go:nosplit
func pipeRead(o *ofile, buf, n uintptr) int64 { return pipeReadFrom(o, &pipes[o.pipe], buf, n, -1) }

// pipeReadFrom reads pipe p for the description o. A service object's
// ring is read through it too: svc names the object whose service is told
// (svcNotify) that the reader waits for data, or is -1.
//
//go:nosplit
func pipeReadFrom(o *ofile, p *pipeT, buf, n uintptr, svc int) int64 {
	if n == 0 {
		return 0
	}
	for {
		avail := uintptr(p.wpos - p.rpos)
		if avail > 0 {
			if n > avail {
				n = avail
			}
			// What buf cannot take stays in the pipe, as on Linux.
			k := ringCopy(p, buf, n, false)
			if k == 0 {
				return -eFAULT
			}
			p.rpos += uint64(k)
			pipeChanged(p)
			return int64(k)
		}
		if p.writers == 0 {
			return 0
		}
		if svc >= 0 {
			svcNotify(svc, svcReqRead)
		}
		if o.flags&oNonblock != 0 {
			return -eAGAIN
		}
		switch blockHeld(o) {
		case wokeSignal:
			return -eINTR
		case -1:
			return -eBADF
		}
	}
}

// blockHeld waits for a change (waitPoll) holding a reference to o, so a
// close by another thread meanwhile does not free the pipe under the
// sleeper, like Linux keeps the file alive until the call returns. It
// returns -1 if that close released the description.
//
//go:nosplit
func blockHeld(o *ofile) int {
	o.refs++
	why := block(waitPoll, 0, 0)
	putOFD(o)
	if o.kind == fdFree {
		return -1
	}
	return why
}

//go:nosplit
func pipeWrite(o *ofile, buf, n uintptr) int64 { return pipeWriteTo(o, &pipes[o.pipe], buf, n) }

// pipeWriteTo writes to pipe p for the description o (its flags, and the
// reference a blocked writer holds); service objects write their rings
// through it too.
//
//go:nosplit
func pipeWriteTo(o *ofile, p *pipeT, buf, n uintptr) int64 {
	done := uintptr(0)
	for done < n {
		if p.readers == 0 {
			if done > 0 {
				return int64(done)
			}
			return -ePIPE
		}
		space := pipeSize - uintptr(p.wpos-p.rpos)
		// Writes of up to a page are atomic (PIPE_BUF is 4096).
		if space == 0 || (n <= pipeSize && space < n-done) {
			if o.flags&oNonblock != 0 {
				if done > 0 {
					return int64(done)
				}
				return -eAGAIN
			}
			switch blockHeld(o) {
			case wokeSignal:
				if done > 0 {
					return int64(done)
				}
				return -eINTR
			case -1:
				return -eBADF
			}
			continue
		}
		k := n - done
		if k > space {
			k = space
		}
		c := ringCopy(p, buf+done, k, true)
		p.wpos += uint64(c)
		done += c
		if c > 0 {
			pipeChanged(p)
		}
		if c < k {
			// buf stopped being the program's memory.
			if done > 0 {
				return int64(done)
			}
			return -eFAULT
		}
	}
	return int64(done)
}

// ringCopy moves up to k bytes between the program's buf and the ring at
// the write (in) or read position, stopping where buf stops being the
// program's memory: the count moved.
//
//go:nosplit
func ringCopy(p *pipeT, buf, k uintptr, in bool) uintptr {
	pos := p.rpos
	if in {
		pos = p.wpos
	}
	return ringUser(p, pos, buf, k, in)
}

// ringUser is ringCopy at ring position pos.
//
//go:nosplit
func ringUser(p *pipeT, pos uint64, buf, k uintptr, in bool) uintptr {
	o := uintptr(pos) % pipeSize
	first := pipeSize - o
	if first > k {
		first = k
	}
	var c uintptr
	if in {
		c = copyInSome(ptr(p.buf+o), buf, first)
		if c == first && k > first {
			c += copyInSome(ptr(p.buf), buf+first, k-first)
		}
	} else {
		c = copyOutSome(buf, ptr(p.buf+o), first)
		if c == first && k > first {
			c += copyOutSome(buf+first, ptr(p.buf), k-first)
		}
	}
	return c
}

//go:nosplit
func pipeReadiness(o *ofile) uint32 {
	p := &pipes[o.pipe]
	r := uint32(0)
	if o.flags&oAccmode != oWronly {
		if p.wpos != p.rpos {
			r |= epollIn
		}
		if p.writers == 0 {
			r |= epollIn | epollHup | epollRdhup
		}
	}
	if o.flags&oAccmode != oRdonly {
		if p.readers == 0 {
			r |= epollOut | epollErr
		} else if p.wpos-p.rpos < pipeSize {
			r |= epollOut
		}
	}
	return r
}

// pipeFile is a pipe's end, or a FIFO's (o.ino is the FIFO's inode).
type pipeFile struct{ baseFile }

//go:nosplit
func (*pipeFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	return pipeRead(o, buf, n)
}

//go:nosplit
func (*pipeFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	return pipeWrite(o, buf, n)
}

//go:nosplit
func (*pipeFile) ready(o *ofile) uint32 { return pipeReadiness(o) }

//go:nosplit
func (*pipeFile) pollable(o *ofile) bool { return true }

//go:nosplit
func (*pipeFile) gen(o *ofile) (uint32, bool) { return pipes[o.pipe].gen, true }

//go:nosplit
func (*pipeFile) fcntl(o *ofile, cmd, arg uint64) int64 {
	if cmd == fGetPipeSz || cmd == fSetPipeSz {
		return pipeSize
	}
	return -eINVAL
}

//go:nosplit
func (*pipeFile) release(o *ofile) {
	pipeClose(o)
	if o.ino != 0 { // a FIFO
		ip(o.ino).opens--
		iput(o.ino)
	}
}

//go:nosplit
func (*pipeFile) stat(o *ofile, st *statT) {
	if o.ino != 0 {
		fillStat(o.ino, st)
		return
	}
	st.dev = fsDev + 1
	st.ino = uint64(o.pipe) + 1
	st.nlink = 1
	st.mode = sIFIFO | 0o600
	st.blksize = pageSize
	p := &pipes[o.pipe]
	st.size = int64(p.wpos - p.rpos)
}

var _ = unsafe.Pointer(nil)
