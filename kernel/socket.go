package kernel

import "unsafe"

// Unix-domain sockets (AF_UNIX), served in the core like pipes: stream,
// datagram and seqpacket sockets, socketpair, bind/listen/accept/connect on
// file-system paths and abstract names, shutdown, send/recv with their
// msghdr forms, the SOL_SOCKET options the net package uses, and epoll
// readiness with a change counter for the netpoller's edge-triggered
// interests. Every socket receives into a ring of its own (sockring.go);
// a stream writer copies into its peer's ring, a datagram or seqpacket
// sender appends a record (header, sender's name, data).
// Descriptor passing (SCM_RIGHTS) is refused with EOPNOTSUPP; a received
// message never carries control data. Other families (AF_INET, AF_INET6,
// AF_NETLINK) fail with EAFNOSUPPORT, as on a kernel built without them,
// so the net package falls back cleanly.

const (
	maxSocks = 256

	afUnix = 1

	sockStream    = 1
	sockDgram     = 2
	sockSeqpacket = 5
	sockNonblock  = oNonblock
	sockCloexec   = oCloexec

	// states
	ssUnconn    = 0
	ssListen    = 1
	ssConnected = 2
	ssPeerGone  = 3 // was connected; the peer closed

	shutRd = 1
	shutWr = 2

	msgPeek     = 0x2
	msgTrunc    = 0x20
	msgDontwait = 0x40
	msgWaitall  = 0x100
	msgNosignal = 0x4000
	msgCtrunc   = 0x8

	sunPathLen = 108
	recHdr     = 5 // record header: u32 data length, u8 name length
)

// Socket errnos.
const (
	eNOTSOCK        = 88
	eDESTADDRREQ    = 89
	eMSGSIZE        = 90
	ePROTOTYPE      = 91
	eNOPROTOOPT     = 92
	ePROTONOSUPPORT = 93
	eSOCKTNOSUPPORT = 94
	eAFNOSUPPORT    = 97
	eADDRINUSE      = 98
	eCONNRESET      = 104
	eISCONN         = 106
	eNOTCONN        = 107
	eCONNREFUSED    = 111
)

type sockT struct {
	used     bool
	typ      uint8
	state    uint8
	shut     uint8 // shutRd | shutWr, this end's
	abstract bool  // name is an abstract one (starts with NUL)
	nlen     uint8 // bytes of name; 0: unbound
	id       uint32
	gen      uint32 // bumped on state changes, for edge-triggered epoll
	peer     int32  // connected peer (datagram: the default destination), or -1
	peerID   uint32
	rx       sockRing
	ino      uint32
	// Listeners: the queue of connected sockets waiting for accept.
	qhead, qtail int32
	qlen         int32
	backlog      int32
	qnext        int32 // queued sockets: the next in the queue
	name         [sunPathLen]byte
}

var (
	socks   [maxSocks]sockT
	sockIDs uint32
	// nameBuf holds the address being parsed (one call at a time; it is
	// used before the call can block).
	nameBuf [sunPathLen + 2]byte
)

// newSock takes a free socket slot with its receive ring.
//
//go:nosplit
func newSock(typ uint8) int32 {
	for i := range socks {
		s := &socks[i]
		if s.used {
			continue
		}
		sockIDs++
		// Field by field: a literal would be built on the stack first.
		*s = sockT{}
		s.used, s.typ, s.id = true, typ, sockIDs
		s.peer, s.qhead, s.qtail, s.qnext = -1, -1, -1, -1
		return int32(i)
	}
	return -eNFILE
}

// sockChanged wakes waiters after a change to s.
//
//go:nosplit
func sockChanged(s *sockT) {
	s.gen++
	wakeAll(waitPoll)
}

// drained tells the sockets that send to s that its ring has room again.
//
//go:nosplit
func drained(s *sockT) {
	wakeAll(waitPoll)
	if s.typ != sockDgram {
		if p := peerOf(s); p != nil {
			sockChanged(p)
		}
		return
	}
	for i := range socks {
		o := &socks[i]
		if o.used && o.peer >= 0 && &socks[o.peer] == s && o.peerID == s.id {
			sockChanged(o)
		}
	}
}

//go:nosplit
func peerOf(s *sockT) *sockT {
	if s.peer < 0 {
		return nil
	}
	p := &socks[s.peer]
	if !p.used || p.id != s.peerID {
		s.peer = -1
		return nil
	}
	return p
}

// sockFree releases socket si and, for a listener, the connections that
// were never accepted (their clients see the end of the stream).
//
//go:nosplit
func sockFree(si int32) {
	s := &socks[si]
	if s.state == ssListen {
		for q := s.qhead; q >= 0; {
			next := socks[q].qnext
			sockFreeOne(q)
			q = next
		}
		s.qhead, s.qtail, s.qlen = -1, -1, 0
	}
	sockFreeOne(si)
}

// sockFreeOne releases socket si: its peer's link, its ring, its name.
//
//go:nosplit
func sockFreeOne(si int32) {
	s := &socks[si]
	if p := peerOf(s); p != nil && s.typ != sockDgram {
		p.peer = -1
		p.state = ssPeerGone
		sockChanged(p)
	}
	if s.typ == sockDgram {
		// Senders connected to it fail from now on (ECONNREFUSED).
		for i := range socks {
			o := &socks[i]
			if o.used && o.peer == si && o.peerID == s.id {
				o.peer = -1
				o.state = ssPeerGone
				sockChanged(o)
			}
		}
	}
	rightsOrphan(si)
	s.rx.free()
	if s.ino != 0 {
		ip(s.ino).opens--
		iput(s.ino)
	}
	*s = sockT{}
	wakeAll(waitPoll)
}

// socketFile is a socket's descriptor (ofile.sock).
type socketFile struct{ baseFile }

//go:nosplit
func (*socketFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	r, _ := sockRecv(o, uio{one: iovec{uint64(buf), uint64(n)}}, 0, 0, 0)
	return r
}

//go:nosplit
func (*socketFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	return sockSend(o, uio{one: iovec{uint64(buf), uint64(n)}}, 0, 0, 0)
}

//go:nosplit
func (*socketFile) stat(o *ofile, st *statT) {
	st.dev = fsDev + 3
	st.ino = uint64(o.sock) + 1
	st.nlink = 1
	st.mode = sIFSOCK | 0o777
	st.blksize = pageSize
}

//go:nosplit
func (*socketFile) pollable(o *ofile) bool { return true }

// gen: every change that can alter a socket's readiness bumps its own
// counter (data arriving, its peer draining, connections queued, the
// peer's shutdown or close), so the counter never goes back.
//
//go:nosplit
func (*socketFile) gen(o *ofile) (uint32, bool) { return socks[o.sock].gen, true }

//go:nosplit
func (*socketFile) ready(o *ofile) uint32 {
	s := &socks[o.sock]
	rx := &s.rx
	r := uint32(0)
	if s.state == ssListen {
		if s.qlen > 0 {
			r |= epollIn
		}
		return r
	}
	if rx.wpos != rx.rpos {
		r |= epollIn
	}
	p := peerOf(s)
	if s.typ == sockDgram {
		if s.shut&shutRd != 0 {
			r |= epollIn | epollRdhup
		}
		if p == nil && s.state != ssPeerGone || p != nil && ringSpace(p) > recHdr+sunPathLen {
			r |= epollOut
		}
		return r
	}
	switch {
	case s.state == ssUnconn:
		return epollOut | epollHup
	case p == nil:
		return r | epollIn | epollOut | epollRdhup | epollHup
	}
	if s.shut&shutRd != 0 || p.shut&shutWr != 0 {
		r |= epollIn | epollRdhup
	}
	if s.shut&shutWr == 0 && p.shut&shutRd == 0 && ringSpace(p) > recHdr {
		r |= epollOut
	}
	if s.shut == shutRd|shutWr {
		r |= epollHup
	}
	return r
}

//go:nosplit
func (*socketFile) ioctl(o *ofile, req, arg uint64) int64 {
	const fionread = 0x541b
	if req != fionread {
		return -eNOTTY
	}
	s := &socks[o.sock]
	rx := &s.rx
	n := int32(rx.used())
	if s.typ != sockStream && n > 0 {
		var h [recHdr]byte
		rx.kern(rx.rpos, unsafe.Pointer(&h), recHdr, false)
		n = int32(recLen(&h))
	}
	if !copyOut(uintptr(arg), unsafe.Pointer(&n), 4) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func (*socketFile) release(o *ofile) { sockFree(o.sock) }

// ringSpace is the free room in s's receive ring.
//
//go:nosplit
func ringSpace(s *sockT) uintptr { return s.rx.space() }

//go:nosplit
func recLen(h *[recHdr]byte) uintptr {
	return uintptr(h[0]) | uintptr(h[1])<<8 | uintptr(h[2])<<16 | uintptr(h[3])<<24
}

// uio is the program's buffers for one transfer: an iovec array in its
// memory (iov, cnt) or one buffer (one).
type uio struct {
	iov uintptr
	cnt int
	one iovec
}

// seg returns buffer i; false if the iovec is not the program's.
//
//go:nosplit
func (u *uio) seg(i int) (iovec, bool) {
	if u.iov == 0 {
		return u.one, true
	}
	var v iovec
	if ucopy(unsafe.Pointer(&v), ptr(u.iov+uintptr(i)*16), 16) != 0 {
		return v, false
	}
	return v, true
}

//go:nosplit
func (u *uio) count() int {
	if u.iov == 0 {
		return 1
	}
	return u.cnt
}

// total checks the buffers (as Linux reads the iovec array first) and
// returns their total length or a negative errno.
//
//go:nosplit
func (u *uio) total() int64 {
	t := int64(0)
	for i := 0; i < u.count(); i++ {
		v, ok := u.seg(i)
		if !ok {
			return -eFAULT
		}
		if int64(v.len) < 0 {
			return -eINVAL
		}
		t += int64(v.len)
		if t > maxRW {
			t = maxRW
		}
	}
	return t
}

// sockWait blocks for a change; r != 0 ends the call with it.
//
//go:nosplit
func sockWait(o *ofile, nonblock bool) int64 {
	if nonblock {
		return -eAGAIN
	}
	switch blockHeld(o) {
	case wokeSignal:
		return -eINTR
	case -1:
		return -eBADF
	}
	return 0
}

// The system calls reach sockSend and sockRecv indirectly: the linker's
// nosplit check starts afresh behind an indirect call, and their chains
// (path lookup, blocking) are deep. Their arguments are values: a pointer
// to a local passed through a function value would move it to the heap.
var (
	sockSendFn = sockSend
	sockRecvFn = sockRecv
)

// sockSend sends u's bytes on o: a stream's into the peer's ring, a
// datagram's or seqpacket's as one record to the peer or, for a datagram,
// to the address at addr.
//
//go:nosplit
func sockSend(o *ofile, uv uio, flags uint64, addr uintptr, alen uint64) int64 {
	rt := sendRights // sysSendmsg's descriptors, before anything blocks
	sendRights = -1
	r := sockSendRightsFn(o, uv, flags, addr, alen, rt)
	if rt >= 0 && !rights[rt].attached { // not sent: the references go back
		rightsAbort(int64(rt))
	}
	return r
}

// sockSendRightsFn: indirect, as sockSendFn.
var sockSendRightsFn = sockSendRights

// sockSendRights is sockSend, with rt the descriptors (rights entry) to
// attach to the data, or -1.
//
//go:nosplit
func sockSendRights(o *ofile, uv uio, flags uint64, addr uintptr, alen uint64, rt int32) int64 {
	u := &uv
	s := &socks[o.sock]
	total := u.total()
	if total < 0 {
		return total
	}
	nonblock := o.flags&oNonblock != 0 || flags&msgDontwait != 0
	if s.typ == sockStream {
		if addr != 0 {
			if s.state == ssConnected {
				return -eISCONN
			}
			return -eOPNOTSUPP
		}
		return streamSend(o, u, total, nonblock, rt)
	}
	// Records: find the receiver.
	var t int32 = -1
	var tid uint32
	if addr != 0 && s.typ == sockDgram {
		si, r := sockLookup(addr, alen, sockDgram)
		if r < 0 {
			return r
		}
		t, tid = si, socks[si].id
	}
	for {
		s = &socks[o.sock]
		if s.shut&shutWr != 0 {
			return -ePIPE
		}
		var p *sockT
		if t >= 0 {
			p = &socks[t]
			if !p.used || p.id != tid {
				return -eCONNREFUSED
			}
		} else {
			p = peerOf(s)
			if p == nil {
				switch {
				case s.state == ssPeerGone && s.typ == sockDgram:
					return -eCONNREFUSED
				case s.state == ssPeerGone:
					return -ePIPE
				case s.typ == sockDgram:
					return -eDESTADDRREQ
				}
				return -eNOTCONN
			}
		}
		if p.shut&shutRd != 0 {
			return -ePIPE
		}
		nl := uintptr(0)
		if s.typ == sockDgram {
			nl = uintptr(s.nlen)
		}
		need := recHdr + nl + uintptr(total)
		if need > sockRingSize {
			return -eMSGSIZE
		}
		if ringSpace(p) < need {
			if r := sockWait(o, nonblock); r != 0 {
				return r
			}
			continue
		}
		rx := &p.rx
		pos := rx.wpos
		if !rx.reserve(pos, need) {
			return -eNOMEM
		}
		h := [recHdr]byte{byte(total), byte(total >> 8), byte(total >> 16), byte(total >> 24), byte(nl)}
		rx.kern(pos, unsafe.Pointer(&h), recHdr, true)
		rx.kern(pos+recHdr, unsafe.Pointer(&s.name), nl, true)
		at := pos + uint64(recHdr+nl)
		for i := 0; i < u.count(); i++ {
			v, ok := u.seg(i)
			if !ok {
				return -eFAULT
			}
			if v.len == 0 {
				continue
			}
			if rx.user(at, uintptr(v.base), uintptr(v.len), true) < uintptr(v.len) {
				return -eFAULT // nothing is committed
			}
			at += v.len
		}
		if rt >= 0 {
			pi := t
			if pi < 0 {
				pi = s.peer
			}
			rightsAttach(rt, pi, pos)
		}
		rx.wpos += uint64(need)
		sockChanged(p)
		return total
	}
}

//go:nosplit
func streamSend(o *ofile, u *uio, total int64, nonblock bool, rt int32) int64 {
	done := int64(0)
	for i := 0; i < u.count(); i++ {
		v, ok := u.seg(i)
		if !ok {
			break
		}
		off := uint64(0)
		for off < v.len {
			s := &socks[o.sock]
			p := peerOf(s)
			var r int64
			switch {
			case s.state == ssUnconn || s.state == ssListen:
				r = -eNOTCONN
			case p == nil || s.shut&shutWr != 0 || p.shut&shutRd != 0:
				r = -ePIPE
			}
			if r == 0 && ringSpace(p) == 0 {
				if nonblock && done > 0 {
					return done
				}
				r = sockWait(o, nonblock)
				if r == 0 {
					continue
				}
			}
			if r < 0 {
				if done > 0 {
					return done
				}
				return r
			}
			rx := &p.rx
			k := uintptr(v.len - off)
			if sp := rx.space(); k > sp {
				k = sp
			}
			if !rx.reserve(rx.wpos, k) {
				if done > 0 {
					return done
				}
				return -eNOMEM
			}
			c := rx.user(rx.wpos, uintptr(v.base+off), k, true)
			if c > 0 && rt >= 0 && !rights[rt].attached {
				rightsAttach(rt, s.peer, rx.wpos) // with the first byte
			}
			rx.wpos += uint64(c)
			if c > 0 {
				sockChanged(p)
			}
			done += int64(c)
			off += uint64(c)
			if c < k {
				if done > 0 {
					return done
				}
				return -eFAULT
			}
		}
	}
	return done
}

// sockRecv receives into u; flagsOut gets MSG_TRUNC for a record cut
// short. A datagram's sender's name goes to addr/alenp when they are set.
//
//go:nosplit
func sockRecv(o *ofile, uv uio, flags uint64, addr, alenp uintptr) (r int64, flagsOut uint32) {
	u := &uv
	// sysRecvmsg's control buffer, before anything blocks.
	var cbuf, clen uint64
	var ccloexec bool
	if recvCtl.set {
		cbuf, clen, ccloexec = recvCtl.buf, recvCtl.len, recvCtl.cloexec
		recvCtl.set = false
	}
	recvCtl.out = 0
	if t := u.total(); t < 0 {
		return t, 0
	}
	nonblock := o.flags&oNonblock != 0 || flags&msgDontwait != 0
	for {
		s := &socks[o.sock]
		rx := &s.rx
		if s.state == ssListen || s.typ != sockDgram && s.state == ssUnconn {
			return -eNOTCONN, 0
		}
		if rx.wpos != rx.rpos {
			if s.typ != sockDgram && addr != 0 && alenp != 0 {
				// No address comes with a connection's data.
				var z int32
				if !copyOut(alenp, unsafe.Pointer(&z), 4) {
					return -eFAULT, 0
				}
			}
			si, at := o.sock, rx.rpos
			var r int64
			var fo uint32
			if s.typ == sockStream {
				r = streamRecv(s, u, flags, rightsLimit(si, at, uint64(u.total())))
			} else {
				r, fo = recordRecv(s, u, flags, addr, alenp)
			}
			if r >= 0 && flags&msgPeek == 0 {
				recvCtl.buf, recvCtl.len, recvCtl.cloexec, recvCtl.out = cbuf, clen, ccloexec, 0
				end := at + 1 // a record's rights are at its start
				if s.typ == sockStream {
					end = at + uint64(r)
				}
				fo |= rightsDeliver(si, at, end)
			}
			return r, fo
		}
		if s.shut&shutRd != 0 {
			return 0, 0
		}
		if s.typ != sockDgram {
			// A datagram socket whose default peer closed still receives.
			if p := peerOf(s); p == nil || p.shut&shutWr != 0 {
				return 0, 0
			}
		}
		if r := sockWait(o, nonblock); r != 0 {
			return r, 0
		}
	}
}

//go:nosplit
func streamRecv(s *sockT, u *uio, flags uint64, lim uint64) int64 {
	rx := &s.rx
	pos := rx.rpos
	done := uintptr(0)
	for i := 0; i < u.count() && pos != rx.wpos && uint64(done) < lim; i++ {
		v, ok := u.seg(i)
		if !ok {
			break
		}
		k := uintptr(v.len)
		if avail := uintptr(rx.wpos - pos); k > avail {
			k = avail
		}
		if k > uintptr(lim)-done {
			k = uintptr(lim) - done // the next descriptors come with the next read
		}
		c := rx.user(pos, uintptr(v.base), k, false)
		pos += uint64(c)
		done += c
		if c < k {
			break
		}
	}
	if done == 0 && u.total() > 0 {
		return -eFAULT
	}
	if flags&msgPeek == 0 && done > 0 {
		rx.rpos = pos
		drained(s)
	}
	return int64(done)
}

//go:nosplit
func recordRecv(s *sockT, u *uio, flags uint64, addr, alenp uintptr) (int64, uint32) {
	rx := &s.rx
	var h [recHdr]byte
	rx.kern(rx.rpos, unsafe.Pointer(&h), recHdr, false)
	dlen := recLen(&h)
	nl := uintptr(h[4])
	at := rx.rpos + uint64(recHdr+nl)
	left := dlen
	done := uintptr(0)
	for i := 0; i < u.count() && left > 0; i++ {
		v, ok := u.seg(i)
		if !ok {
			return -eFAULT, 0
		}
		k := uintptr(v.len)
		if k > left {
			k = left
		}
		if rx.user(at, uintptr(v.base), k, false) < k {
			return -eFAULT, 0 // the record stays
		}
		at += uint64(k)
		left -= k
		done += k
	}
	if addr != 0 && alenp != 0 && s.typ == sockDgram {
		var r int64
		if nl == 0 {
			// An unnamed sender: no address at all (length 0), as on
			// Linux; getpeername says AF_UNIX with an empty path instead.
			var z int32
			if !copyOut(alenp, unsafe.Pointer(&z), 4) {
				r = -eFAULT
			}
		} else {
			rx.kern(rx.rpos+recHdr, unsafe.Pointer(&nameBuf[2]), nl, false)
			r = putSockaddr(addr, alenp, nl, nameBuf[2] == 0)
		}
		if r < 0 {
			return r, 0
		}
	}
	if flags&msgPeek == 0 {
		rx.rpos += uint64(recHdr + nl + dlen)
		drained(s)
	}
	var fo uint32
	if done < dlen {
		fo = msgTrunc
		if flags&msgTrunc != 0 {
			return int64(dlen), fo
		}
	}
	return int64(done), fo
}

// putSockaddr writes the address whose sun_path is nameBuf[2:2+nl] to the
// program's addr, truncated to the length at alenp, and the full length
// to alenp.
//
//go:nosplit
func putSockaddr(addr, alenp uintptr, nl uintptr, abstract bool) int64 {
	var have int32
	if !copyIn(unsafe.Pointer(&have), alenp, 4) {
		return -eFAULT
	}
	if have < 0 {
		return -eINVAL
	}
	nameBuf[0], nameBuf[1] = afUnix, 0
	full := 2 + nl
	if nl > 0 && !abstract && nl < sunPathLen {
		nameBuf[2+nl] = 0
		full++ // the path's NUL, as Linux counts it
	}
	k := full
	if uintptr(have) < k {
		k = uintptr(have)
	}
	if k > 0 && !copyOut(addr, unsafe.Pointer(&nameBuf), k) {
		return -eFAULT
	}
	l := int32(full)
	if !copyOut(alenp, unsafe.Pointer(&l), 4) {
		return -eFAULT
	}
	return 0
}

// readSockaddr copies a sockaddr_un from the program into nameBuf and
// returns the length of the name in sun_path (a path up to its NUL, an
// abstract name whole); 0 is an address without a name.
//
//go:nosplit
func readSockaddr(addr uintptr, alen uint64) (uintptr, int64) {
	if alen < 2 || alen > sunPathLen+2 {
		return 0, -eINVAL
	}
	if !copyIn(unsafe.Pointer(&nameBuf), addr, uintptr(alen)) {
		return 0, -eFAULT
	}
	if nameBuf[0] != afUnix || nameBuf[1] != 0 {
		return 0, -eINVAL
	}
	n := uintptr(alen) - 2
	if n > 0 && nameBuf[2] != 0 {
		for i := uintptr(0); i < n; i++ {
			if nameBuf[2+i] == 0 {
				return i, 0
			}
		}
	}
	return n, 0
}

// sockLookup finds the socket bound to the address at addr.
//
//go:nosplit
func sockLookup(addr uintptr, alen uint64, typ uint8) (int32, int64) {
	n, r := readSockaddr(addr, alen)
	if r < 0 {
		return -1, r
	}
	if n == 0 {
		return -1, -eINVAL
	}
	si := int32(-1)
	if nameBuf[2] == 0 {
		for i := range socks {
			s := &socks[i]
			if s.used && s.abstract && uintptr(s.nlen) == n && sameName(s, n) {
				si = int32(i)
				break
			}
		}
	} else {
		if r := walk(atFdcwd, addr+2, wFollow); r == walkData {
			// No socket is bound on /data (sysBind): whatever the name
			// is there, nothing listens on it.
			return -1, -eCONNREFUSED
		} else if r < 0 {
			return -1, r
		}
		if lkIno == 0 {
			return -1, -eNOENT
		}
		if ip(lkIno).mode&sIFMT != sIFSOCK {
			return -1, -eCONNREFUSED
		}
		for i := range socks {
			if socks[i].used && socks[i].ino == lkIno {
				si = int32(i)
				break
			}
		}
	}
	if si < 0 {
		return -1, -eCONNREFUSED
	}
	if socks[si].typ != typ {
		return -1, -ePROTOTYPE
	}
	return si, 0
}

//go:nosplit
func sameName(s *sockT, n uintptr) bool {
	for i := uintptr(0); i < n; i++ {
		if s.name[i] != nameBuf[2+i] {
			return false
		}
	}
	return true
}

// sockOf returns the socket behind descriptor fd, or an errno.
//
//go:nosplit
func sockOf(fd uint64) (*ofile, int64) {
	o := getFile(fd)
	if o == nil {
		return nil, -eBADF
	}
	if o.kind != fdSocket {
		return nil, -eNOTSOCK
	}
	return o, 0
}

// sockFD opens a descriptor for socket si.
//
//go:nosplit
func sockFD(si int32, flags uint64) int64 {
	fd := allocFD(fdSocket, oRdwr|flags&(oNonblock|oCloexec))
	if fd >= 0 {
		ofiles[fds[fd].of-1].sock = si
	}
	return fd
}

//go:nosplit
func sockArgs(domain, typ, proto uint64) (uint8, int64) {
	if domain != afUnix {
		return 0, -eAFNOSUPPORT
	}
	if typ&^(0xf|sockNonblock|sockCloexec) != 0 {
		return 0, -eINVAL
	}
	if proto != 0 && proto != afUnix {
		return 0, -ePROTONOSUPPORT
	}
	switch typ & 0xf {
	case sockStream, sockDgram, sockSeqpacket:
		return uint8(typ & 0xf), 0
	}
	return 0, -eSOCKTNOSUPPORT
}

//go:nosplit
func sysSocket(f *sysFrame) int64 {
	if f.rdi == afInet || f.rdi == afInet6 || f.rdi == afNetlink {
		return netSocket(f.rdi, f.rsi, f.rdx)
	}
	t, r := sockArgs(f.rdi, f.rsi, f.rdx)
	if r < 0 {
		return r
	}
	si := newSock(t)
	if si < 0 {
		return int64(si)
	}
	fd := sockFD(si, f.rsi)
	if fd < 0 {
		sockFree(si)
	}
	return fd
}

// link connects sockets a and b to each other.
//
//go:nosplit
func link(a, b int32) {
	sa, sb := &socks[a], &socks[b]
	sa.peer, sa.peerID, sa.state = b, sb.id, ssConnected
	sb.peer, sb.peerID, sb.state = a, sa.id, ssConnected
	sockChanged(sa)
	sockChanged(sb)
}

//go:nosplit
func sysSocketpair(f *sysFrame) int64 {
	t, r := sockArgs(f.rdi, f.rsi, f.rdx)
	if r < 0 {
		return r
	}
	if !userOK(uintptr(f.r10), 8) {
		return -eFAULT
	}
	a := newSock(t)
	if a < 0 {
		return int64(a)
	}
	b := newSock(t)
	if b < 0 {
		sockFree(a)
		return int64(b)
	}
	link(a, b)
	fa := sockFD(a, f.rsi)
	if fa < 0 {
		sockFree(a)
		sockFree(b)
		return fa
	}
	fb := sockFD(b, f.rsi)
	if fb < 0 {
		closeFD(uint64(fa))
		sockFree(b)
		return fb
	}
	sv := [2]int32{int32(fa), int32(fb)}
	if !copyOut(uintptr(f.r10), unsafe.Pointer(&sv), 8) {
		closeFD(uint64(fa))
		closeFD(uint64(fb))
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysBind(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsBind, f.rsi, f.rdx, 0, 0)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	s := &socks[o.sock]
	n, r := readSockaddr(uintptr(f.rsi), f.rdx)
	if r < 0 {
		return r
	}
	if s.nlen != 0 {
		return -eINVAL
	}
	if n == 0 {
		// Autobind: an abstract name of five hex digits.
		nameBuf[2] = 0
		id := s.id
		for i := uintptr(0); i < 5; i++ {
			nameBuf[3+i] = "0123456789abcdef"[id>>(4*(4-i))&15]
		}
		n = 6
	}
	if nameBuf[2] == 0 {
		for i := range socks {
			if socks[i].used && socks[i].abstract && uintptr(socks[i].nlen) == n && sameName(&socks[i], n) {
				return -eADDRINUSE
			}
		}
		s.abstract = true
	} else {
		r := lookupNew(atFdcwd, uintptr(f.rsi)+2, false)
		if r == walkData {
			// A socket's name is a node of the in-memory file system;
			// /data has no socket nodes, as it has no FIFOs (mknod:
			// EPERM). lookupNew holds /data's lock on walkData.
			dataUnlock()
			return -ePERM
		}
		if r == -eEXIST {
			return -eADDRINUSE
		}
		if r < 0 {
			return r
		}
		i := ialloc(sIFSOCK | 0o777&^umaskBits)
		if i == 0 {
			return -eNOSPC
		}
		if r := dirAdd(lkParent, lkName, lkNameLen, i); r < 0 {
			dropLink(i)
			return r
		}
		ip(i).opens++
		s.ino = i
	}
	for i := uintptr(0); i < n; i++ {
		s.name[i] = nameBuf[2+i]
	}
	s.nlen = uint8(n)
	return 0
}

//go:nosplit
func sysListen(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsListen, f.rsi, 0, 0, 0)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	s := &socks[o.sock]
	if s.typ == sockDgram {
		return -eOPNOTSUPP
	}
	if s.nlen == 0 || s.state != ssUnconn && s.state != ssListen {
		return -eINVAL
	}
	b := int32(f.rsi)
	if b < 0 || b > 4096 {
		b = 4096
	}
	s.backlog = b
	s.state = ssListen
	sockChanged(s)
	return 0
}

//go:nosplit
func sysConnect(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsConnect, f.rsi, f.rdx, 0, 0)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	s := &socks[o.sock]
	if s.typ == sockDgram {
		si, r := sockLookup(uintptr(f.rsi), f.rdx, sockDgram)
		if r < 0 {
			return r
		}
		s.peer, s.peerID, s.state = si, socks[si].id, ssConnected
		sockChanged(s)
		return 0
	}
	switch s.state {
	case ssConnected, ssPeerGone:
		return -eISCONN
	case ssListen:
		return -eINVAL
	}
	li, r := sockLookup(uintptr(f.rsi), f.rdx, s.typ)
	if r < 0 {
		return r
	}
	lid := socks[li].id
	for {
		l := &socks[li]
		if !l.used || l.id != lid || l.state != ssListen {
			return -eCONNREFUSED
		}
		if l.qlen <= l.backlog {
			break
		}
		if r := sockWait(o, o.flags&oNonblock != 0); r != 0 {
			return r
		}
		if socks[o.sock].state != ssUnconn {
			return -eISCONN
		}
	}
	l := &socks[li]
	si := newSock(s.typ)
	if si < 0 {
		return int64(si)
	}
	srv := &socks[si]
	srv.name, srv.nlen, srv.abstract = l.name, l.nlen, l.abstract
	link(o.sock, si)
	if l.qtail >= 0 {
		socks[l.qtail].qnext = si
	} else {
		l.qhead = si
	}
	l.qtail = si
	l.qlen++
	sockChanged(l)
	return 0
}

//go:nosplit
func doAccept(fd uint64, addr, alenp uintptr, flags uint64) int64 {
	if flags&^(sockNonblock|sockCloexec) != 0 {
		return -eINVAL
	}
	o, r := sockOf(fd)
	if r < 0 {
		return r
	}
	for {
		l := &socks[o.sock]
		if l.typ == sockDgram {
			return -eOPNOTSUPP
		}
		if l.state != ssListen {
			return -eINVAL
		}
		if l.qlen > 0 {
			break
		}
		if r := sockWait(o, o.flags&oNonblock != 0); r != 0 {
			return r
		}
	}
	l := &socks[o.sock]
	si := l.qhead
	nfd := sockFD(si, flags)
	if nfd < 0 {
		return nfd
	}
	l.qhead = socks[si].qnext
	if l.qhead < 0 {
		l.qtail = -1
	}
	l.qlen--
	socks[si].qnext = -1
	sockChanged(l)
	if addr != 0 && alenp != 0 {
		if r := sockName(&socks[si], true, addr, alenp); r < 0 {
			return r // the connection is open nonetheless, as on Linux
		}
	}
	return nfd
}

//go:nosplit
func sysAccept(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsAccept, f.rsi, f.rdx, 0, 0)
	}
	return doAccept(f.rdi, uintptr(f.rsi), uintptr(f.rdx), 0)
}

//go:nosplit
func sysAccept4(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsAccept, f.rsi, f.rdx, f.r10, 0)
	}
	return doAccept(f.rdi, uintptr(f.rsi), uintptr(f.rdx), f.r10)
}

// sockName writes s's name (or its peer's) to the program.
//
//go:nosplit
func sockName(s *sockT, peer bool, addr, alenp uintptr) int64 {
	if peer {
		p := peerOf(s)
		if p == nil {
			if s.state != ssPeerGone {
				return -eNOTCONN
			}
			// Linux still names a peer that closed; its name is gone
			// here, so it reads as unnamed.
			return putSockaddr(addr, alenp, 0, false)
		}
		s = p
	}
	for i := uintptr(0); i < uintptr(s.nlen); i++ {
		nameBuf[2+i] = s.name[i]
	}
	return putSockaddr(addr, alenp, uintptr(s.nlen), s.abstract)
}

//go:nosplit
func sysGetsockname(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsGetsockname, f.rsi, f.rdx, 0, 0)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	return sockName(&socks[o.sock], false, uintptr(f.rsi), uintptr(f.rdx))
}

//go:nosplit
func sysGetpeername(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsGetpeername, f.rsi, f.rdx, 0, 0)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	return sockName(&socks[o.sock], true, uintptr(f.rsi), uintptr(f.rdx))
}

//go:nosplit
func sysShutdown(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsShutdown, f.rsi, 0, 0, 0)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	s := &socks[o.sock]
	if f.rsi > 2 {
		return -eINVAL
	}
	if s.state != ssConnected && s.state != ssPeerGone {
		return -eNOTCONN
	}
	s.shut |= uint8(f.rsi + 1)
	sockChanged(s)
	if p := peerOf(s); p != nil {
		sockChanged(p)
	}
	return 0
}

//go:nosplit
func sysSendto(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSendtoV(o, f)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	u := uio{one: iovec{f.rsi, f.rdx}}
	return sockSendFn(o, u, f.r10, uintptr(f.r8), f.r9)
}

//go:nosplit
func sysRecvfrom(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netRecvfromV(o, f)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	u := uio{one: iovec{f.rsi, f.rdx}}
	r, _ = sockRecvFn(o, u, f.r10, uintptr(f.r8), uintptr(f.r9))
	return r
}

// msghdr is struct msghdr on x86-64.
type msghdr struct {
	name       uint64
	namelen    uint32
	_          uint32
	iov        uint64
	iovlen     uint64
	control    uint64
	controllen uint64
	flags      int32
	_          int32
}

//go:nosplit
func sysSendmsg(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netMsgV(o, true, uintptr(f.rsi), f.rdx)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	var m msghdr
	if !copyIn(unsafe.Pointer(&m), uintptr(f.rsi), unsafe.Sizeof(m)) {
		return -eFAULT
	}
	if m.iovlen > 1024 {
		return -eMSGSIZE
	}
	u := uio{iov: uintptr(m.iov), cnt: int(m.iovlen)}
	if m.iovlen > 0 && !userOK(u.iov, uintptr(m.iovlen)*16) {
		return -eFAULT
	}
	var addr uintptr
	if m.name != 0 && m.namelen != 0 {
		addr = uintptr(m.name)
	}
	if m.controllen != 0 {
		// Descriptors (SCM_RIGHTS; scmrights.go); credentials are
		// not supported (EOPNOTSUPP).
		ri := rightsParse(m.control, m.controllen)
		if ri < -1 {
			return ri
		}
		sendRights = int32(ri)
	}
	return sockSendFn(o, u, f.rdx, addr, uint64(m.namelen))
}

//go:nosplit
func sysRecvmsg(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netMsgV(o, false, uintptr(f.rsi), f.rdx)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	var m msghdr
	mp := uintptr(f.rsi)
	if !copyIn(unsafe.Pointer(&m), mp, unsafe.Sizeof(m)) {
		return -eFAULT
	}
	if m.iovlen > 1024 {
		return -eMSGSIZE
	}
	u := uio{iov: uintptr(m.iov), cnt: int(m.iovlen)}
	if m.iovlen > 0 && !userOK(u.iov, uintptr(m.iovlen)*16) {
		return -eFAULT
	}
	var addr, alenp uintptr
	if m.name != 0 {
		addr, alenp = uintptr(m.name), mp+8
	}
	recvCtl.set, recvCtl.buf, recvCtl.len, recvCtl.cloexec = true, m.control, m.controllen, f.rdx&msgCmsgCloexec != 0
	r, fo := sockRecvFn(o, u, f.rdx, addr, alenp)
	recvCtl.set = false
	if r < 0 {
		return r
	}
	if addr == 0 {
		var z uint32
		copyOut(mp+8, unsafe.Pointer(&z), 4)
	}
	z := recvCtl.out // written right before sockRecv returned
	fl := int32(fo)
	if !copyOut(mp+40, unsafe.Pointer(&z), 8) || !copyOut(mp+48, unsafe.Pointer(&fl), 4) {
		return -eFAULT
	}
	return r
}

// SOL_SOCKET options.
const (
	solSocket    = 1
	soReuseaddr  = 2
	soType       = 3
	soError      = 4
	soBroadcast  = 6
	soSndbuf     = 7
	soRcvbuf     = 8
	soKeepalive  = 9
	soLinger     = 13
	soPasscred   = 16
	soPeercred   = 17
	soRcvlowat   = 18
	soSndlowat   = 19
	soRcvtimeo   = 20
	soSndtimeo   = 21
	soAcceptconn = 30
	soSndbufForc = 32
	soRcvbufForc = 33
	soProtocol   = 38
	soDomain     = 39
)

//go:nosplit
func sysGetsockopt(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsGetsockopt, f.rsi, f.rdx, f.r10, f.r8)
	}
	o, r := sockOf(f.rdi)
	if r < 0 {
		return r
	}
	s := &socks[o.sock]
	if f.rsi != solSocket {
		return -eOPNOTSUPP
	}
	var have int32
	if !copyIn(unsafe.Pointer(&have), uintptr(f.r8), 4) {
		return -eFAULT
	}
	if have < 0 {
		return -eINVAL
	}
	var v [4]int32 // up to 16 bytes of value
	n := uintptr(4)
	switch f.rdx {
	case soType:
		v[0] = int32(s.typ)
	case soError, soReuseaddr, soBroadcast, soKeepalive, soPasscred, soProtocol:
	case soDomain:
		v[0] = afUnix
	case soAcceptconn:
		if s.state == ssListen {
			v[0] = 1
		}
	case soSndbuf, soRcvbuf:
		v[0] = sockRingSize
	case soRcvlowat, soSndlowat:
		v[0] = 1
	case soLinger:
		n = 8
	case soRcvtimeo, soSndtimeo:
		n = 16
	case soPeercred:
		// struct ucred of the one process: pid 1, root.
		n = 12
		v[0] = 1
		if peerOf(s) == nil && s.state != ssPeerGone {
			v[0] = 0
		}
	default:
		return -eNOPROTOOPT
	}
	if uintptr(have) < n {
		n = uintptr(have)
	}
	if !copyOut(uintptr(f.r10), unsafe.Pointer(&v), n) {
		return -eFAULT
	}
	l := int32(n)
	if !copyOut(uintptr(f.r8), unsafe.Pointer(&l), 4) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysSetsockopt(f *sysFrame) int64 {
	if o := netObj(f.rdi); o != nil {
		return netSockV(o, nsSetsockopt, f.rsi, f.rdx, f.r10, f.r8)
	}
	if _, r := sockOf(f.rdi); r < 0 {
		return r
	}
	if f.rsi != solSocket {
		return -eOPNOTSUPP
	}
	switch f.rdx {
	case soReuseaddr, soBroadcast, soSndbuf, soRcvbuf, soKeepalive, soPasscred,
		soRcvlowat, soSndlowat, soSndbufForc, soRcvbufForc:
		if int32(f.r8) < 4 {
			return -eINVAL
		}
	case soLinger:
		if int32(f.r8) < 8 {
			return -eINVAL
		}
	case soRcvtimeo, soSndtimeo:
		if int32(f.r8) < 16 {
			return -eINVAL
		}
	default:
		return -eNOPROTOOPT
	}
	if !userOK(uintptr(f.r10), uintptr(uint32(f.r8))) {
		return -eFAULT
	}
	return 0 // accepted; buffer sizes and timeouts stay as they are
}
