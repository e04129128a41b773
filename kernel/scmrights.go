package kernel

import "unsafe"

// Descriptor passing on Unix sockets (SCM_RIGHTS). sendmsg's control data
// names descriptors; their open file descriptions travel, a reference
// each, in an entry of rights tied to the receiving socket and the ring
// position of the data they came with (a stream's first byte, a record's
// start). A read never crosses such a position, so the descriptions
// arrive with the recvmsg that reads their data, as new descriptors
// (close-on-exec with MSG_CMSG_CLOEXEC); a read or recv without room for
// them closes them (MSG_CTRUNC), as on Linux.
//
// A socket freed with rights still queued only marks them (rightsOrphan):
// putting their descriptions could free sockets in turn, and the core
// does not recurse; rightsGC puts them, from closeFD and the calls here.

const (
	maxRights      = 32 // messages with descriptors in flight
	rightsPerMsg   = 16 // descriptors in one message (Linux: 253)
	scmRights      = 1
	ctlBufLen      = 16 + 4*rightsPerMsg
	msgCmsgCloexec = 0x40000000
)

type rightsT struct {
	used, attached, orphan bool
	sock                   int32 // the receiving socket
	sockID                 uint32
	pos                    uint64 // its ring position the data starts at
	n                      int32
	of                     [rightsPerMsg]int32 // ofiles indices, a reference each
}

var (
	rights [maxRights]rightsT
	// sendRights is the entry sysSendmsg hands sockSend (-1: none), and
	// recvCtl the control buffer sysRecvmsg hands sockRecv, with what it
	// wrote there. Like nameBuf, they are taken before the call can block.
	sendRights int32 = -1
	recvCtl    struct {
		set      bool // sysRecvmsg's, for the next sockRecv
		buf, len uint64
		cloexec  bool
		out      uint64 // control bytes written
	}
	ctlBuf [ctlBufLen]byte
)

// rightsParse reads sendmsg's control data: an entry holding the
// descriptions of its SCM_RIGHTS descriptors, -1 when it names none, or
// a negative errno (EBADF, EINVAL, EOPNOTSUPP for other messages such as
// credentials).
//
//go:nosplit
func rightsParse(ctl, clen uint64) int64 {
	if clen > ctlBufLen {
		return -eINVAL
	}
	if !copyIn(unsafe.Pointer(&ctlBuf), uintptr(ctl), uintptr(clen)) {
		return -eFAULT
	}
	ri := int64(-1)
	for off := uint64(0); off+16 <= clen; {
		l := *(*uint64)(unsafe.Pointer(&ctlBuf[off]))
		level := *(*int32)(unsafe.Pointer(&ctlBuf[off+8]))
		typ := *(*int32)(unsafe.Pointer(&ctlBuf[off+12]))
		if l < 16 || off+l > clen {
			rightsAbort(ri)
			return -eINVAL
		}
		if level != solSocket || typ != scmRights {
			rightsAbort(ri)
			return -eOPNOTSUPP
		}
		if ri < 0 {
			ri = -1
			for i := range rights {
				if e := &rights[i]; !e.used {
					// Field by field: a literal would be built on the stack first.
					e.used, e.attached, e.orphan, e.n = true, false, false, 0
					ri = int64(i)
					break
				}
			}
			if ri < 0 {
				return -eNOMEM
			}
		}
		e := &rights[ri]
		for p := off + 16; p+4 <= off+l; p += 4 {
			fd := *(*int32)(unsafe.Pointer(&ctlBuf[p]))
			if fd < 0 || e.n >= rightsPerMsg {
				rightsAbort(ri)
				if fd < 0 {
					return -eBADF
				}
				return -eINVAL
			}
			o := getFile(uint64(fd))
			if o == nil {
				rightsAbort(ri)
				return -eBADF
			}
			o.refs++
			e.of[e.n] = fds[fd].of - 1
			e.n++
		}
		off += (l + 7) &^ 7
	}
	return ri
}

// rightsAbort puts entry ri's references and frees it (ri < 0: none).
//
//go:nosplit
func rightsAbort(ri int64) {
	if ri < 0 {
		return
	}
	rights[ri].orphan = true
	rightsGC()
}

// rightsAttach ties entry ri to socket si's data at pos.
//
//go:nosplit
func rightsAttach(ri int32, si int32, pos uint64) {
	e := &rights[ri]
	e.attached, e.sock, e.sockID, e.pos = true, si, socks[si].id, pos
}

// rightsOrphan marks socket si's queued rights for rightsGC.
//
//go:nosplit
func rightsOrphan(si int32) {
	for i := range rights {
		e := &rights[i]
		if e.used && e.attached && e.sock == si && e.sockID == socks[si].id {
			e.orphan = true
		}
	}
}

// rightsGC puts the references of orphaned entries and frees them;
// putting one may orphan more, so it scans until there are none.
//
//go:nosplit
func rightsGC() {
	for again := true; again; {
		again = false
		for i := range rights {
			e := &rights[i]
			if !e.used || !e.orphan {
				continue
			}
			n := e.n
			e.used = false
			for k := int32(0); k < n; k++ {
				putOFD(&ofiles[e.of[k]])
			}
			again = true
		}
	}
}

// rightsLimit is how many bytes a read of socket si at pos may take: as
// on Linux it may reach into the next message with descriptors (which
// then come with it) but not into the one after (want if none).
//
//go:nosplit
func rightsLimit(si int32, pos uint64, want uint64) uint64 {
	first, second := ^uint64(0), ^uint64(0)
	for i := range rights {
		e := &rights[i]
		if !e.used || !e.attached || e.orphan || e.sock != si || e.sockID != socks[si].id || e.pos < pos {
			continue
		}
		switch {
		case e.pos < first:
			first, second = e.pos, first
		case e.pos < second:
			second = e.pos
		}
	}
	if second != ^uint64(0) && second-pos < want {
		want = second - pos
	}
	return want
}

// rightsDeliver hands the descriptors that came with socket si's data
// read from pos to end to the reader: new descriptors in a control
// message in recvCtl's buffer, as many as fit (else closed and
// msgCtrunc). It returns the flags to add.
//
//go:nosplit
func rightsDeliver(si int32, pos, end uint64) uint32 {
	for i := range rights {
		e := &rights[i]
		if !e.used || !e.attached || e.orphan || e.sock != si || e.sockID != socks[si].id || e.pos < pos || e.pos >= end {
			continue
		}
		fit := int32(0)
		if recvCtl.buf != 0 && recvCtl.len >= 16+4 {
			fit = int32((recvCtl.len - 16) / 4)
		}
		if fit > e.n {
			fit = e.n
		}
		got := int32(0)
		for k := int32(0); k < fit; k++ {
			fd := fdFor(e.of[k], recvCtl.cloexec, 0)
			if fd < 0 {
				break
			}
			*(*int32)(unsafe.Pointer(&ctlBuf[16+4*got])) = int32(fd)
			got++
		}
		var fo uint32
		if got < e.n {
			fo = msgCtrunc
		}
		if got > 0 {
			l := uint64(16 + 4*got)
			*(*uint64)(unsafe.Pointer(&ctlBuf[0])) = l
			*(*int32)(unsafe.Pointer(&ctlBuf[8])) = solSocket
			*(*int32)(unsafe.Pointer(&ctlBuf[12])) = scmRights
			if copyOut(uintptr(recvCtl.buf), unsafe.Pointer(&ctlBuf), uintptr(l)) {
				recvCtl.out = l
			}
		}
		// The references not handed over as descriptors are put.
		for k := int32(0); k < e.n-got; k++ {
			e.of[k] = e.of[got+k]
		}
		e.n -= got
		e.orphan = true
		rightsGC()
		return fo
	}
	return 0
}
