package kernel

import "unsafe"

// AF_INET and AF_INET6 sockets: service objects of the network service
// (package kernel/netsvc, gVisor's TCP/IP stack), which registers its
// queue with amber_service(svcNet). The core keeps no state of its own
// for them: a stream's bytes go through the object's two rings and the
// runtime's netpoller like any service object's, and every control
// operation (bind, listen, connect, accept, names, options, shutdown) is
// a synchronous call (svcReqSock with the operation in op's high bits and
// the system call's arguments in args). The service reads and writes the
// program's buffers itself (one address space); the core checks them
// first, so a bad pointer is EFAULT and never a fault in the service.
// Readiness that the rings cannot tell (a listener's pending connection,
// a connect in progress or failed) the service sets with svcEvents.
// docs/kernel.md, "Network", has the design.

const (
	afInet    = 2
	afInet6   = 10
	afNetlink = 16 // NETLINK_ROUTE only: the service answers net.Interfaces' dumps
	sockRaw   = 3

	netNameMax = 28 // sizeof(struct sockaddr_in6)
)

// Socket operations (the high 16 bits of svcReqSock requests); the
// arguments are the system call's after the descriptor.
const (
	nsSocket      = iota + 1 // (domain, type, protocol)
	nsBind                   // (addr, addrlen)
	nsListen                 // (backlog)
	nsConnect                // (addr, addrlen, 0, 0, nonblocking)
	nsAccept                 // (addr, *addrlen, flags, 0, nonblocking)
	nsGetsockname            // (addr, *addrlen)
	nsGetpeername            // (addr, *addrlen)
	nsShutdown               // (how)
	nsGetsockopt             // (level, name, value, *len)
	nsSetsockopt             // (level, name, value, len)
	nsSendto                 // (buf, len, flags, addr, addrlen): datagrams
	nsRecvfrom               // (buf, len, flags, addr, *addrlen): datagrams
)

// netSvc is the network service's queue, or -1 (no service: socket()
// for AF_INET and AF_INET6 fails with EAFNOSUPPORT).
var netSvc int32 = -1

// The system calls reach the network socket calls indirectly: the
// linker's nosplit check starts afresh behind an indirect call, and these
// chains (a blocking call) are deep.
var (
	netSockV     = netSockFn
	netSendtoV   = netSendto
	netRecvfromV = netRecvfrom
	netMsgV      = netMsg
	netDgramV    = netDgram
)

// netObj returns the network socket behind fd, or nil.
//
//go:nosplit
func netObj(fd uint64) *ofile {
	o := getFile(fd)
	if o == nil || o.kind != fdSvcObject || !svcObjects[o.pipe].inet {
		return nil
	}
	return o
}

// netCall makes socket call op on o.
//
//go:nosplit
func netCall(o *ofile, op uint32, a0, a1, a2, a3, a4 uint64) int64 {
	args := [5]uint64{a0, a1, a2, a3, a4}
	return svcCallOpFn(o, svcReqSock|op<<16, args)
}

// svcCallOpFn is reached indirectly: the linker's nosplit check starts
// afresh behind it (the call blocks, and its chain is deep).
var svcCallOpFn = svcCallOpVal

//go:nosplit
func svcCallOpVal(o *ofile, op uint32, args [5]uint64) int64 { return svcCallOp(o, op, &args) }

//go:nosplit
func netSocket(domain, typ, proto uint64) int64 {
	if netSvc < 0 || !services[netSvc].used {
		return -eAFNOSUPPORT
	}
	if typ&^(0xf|sockNonblock|sockCloexec) != 0 {
		return -eINVAL
	}
	if domain == afNetlink {
		if typ&0xf != sockRaw && typ&0xf != sockDgram {
			return -eSOCKTNOSUPPORT
		}
		if proto != 0 { // NETLINK_ROUTE
			return -ePROTONOSUPPORT
		}
	} else {
		switch typ & 0xf {
		case sockStream, sockDgram:
		default:
			return -eSOCKTNOSUPPORT
		}
		if proto != 0 && !(typ&0xf == sockStream && proto == 6) && !(typ&0xf == sockDgram && proto == 17) {
			return -ePROTONOSUPPORT
		}
	}
	fd := svcNewObject(netSvc, 0, typ&(oNonblock|oCloexec), 0)
	if fd < 0 {
		return fd
	}
	// Not a call: Go's syscall.Socket is a raw system call (the runtime
	// does not hand its P over), so with GOMAXPROCS=1 the service could
	// never run to answer it. The request is queued before any other on
	// the object, so the service has the socket before its first call.
	o := getFile(uint64(fd))
	ob := &svcObjects[o.pipe]
	ob.inet, ob.dgram, ob.family = true, typ&0xf != sockStream, uint16(domain)
	if ob.dgram {
		ob.evOff = epollIn // datagrams do not go through the rings
	} else {
		ob.evOff = epollIn | epollOut // until it connects or listens
	}
	r := svcRequest{op: svcReqSock | nsSocket<<16, handle: svcHandle(int(o.pipe)), args: [5]uint64{domain, typ & 0xf, proto}}
	if !svcPost(&services[netSvc], &r) {
		closeFD(uint64(fd))
		return -eAGAIN
	}
	return fd
}

// netName answers getsockname and getpeername from the addresses the
// service set (svcName): they are raw system calls in Go too.
//
//go:nosplit
func netName(o *ofile, peer int, addr, alenp uint64) int64 {
	if r := netAddrOut(addr, alenp); r < 0 {
		return r
	}
	ob := &svcObjects[o.pipe]
	var buf [netNameMax]byte
	n := uintptr(ob.nameLen[peer])
	if n == 0 {
		if peer == 1 {
			return -eNOTCONN
		}
		// Unbound: the family's any address.
		n = 16
		if ob.family == afInet6 {
			n = 28
		} else if ob.family == afNetlink {
			n = 12
		}
		buf[0] = byte(ob.family)
	} else {
		buf = ob.names[peer]
	}
	var l int32
	copyIn(unsafe.Pointer(&l), uintptr(alenp), 4)
	c := n
	if uintptr(l) < c {
		c = uintptr(l)
	}
	if !copyOut(uintptr(addr), unsafe.Pointer(&buf), c) {
		return -eFAULT
	}
	l = int32(n)
	copyOut(uintptr(alenp), unsafe.Pointer(&l), 4)
	return 0
}

// netAddrIn checks a socket address the program passes.
//
//go:nosplit
func netAddrIn(addr, alen uint64) int64 {
	if alen > 128 {
		return -eINVAL
	}
	if !userOK(uintptr(addr), uintptr(alen)) {
		return -eFAULT
	}
	return 0
}

// netAddrOut checks a buffer and its length the service fills.
//
//go:nosplit
func netAddrOut(addr, alenp uint64) int64 {
	if addr == 0 {
		return 0
	}
	var l int32
	if !copyIn(unsafe.Pointer(&l), uintptr(alenp), 4) {
		return -eFAULT
	}
	if l < 0 {
		return -eINVAL
	}
	if !userOK(uintptr(addr), uintptr(l)) || !userOK(uintptr(alenp), 4) {
		return -eFAULT
	}
	return 0
}

// netSockFn serves the socket system calls on a network socket (socket.go
// hands them over): nr is the operation, a-d the call's arguments after
// the descriptor.
//
//go:nosplit
func netSockFn(o *ofile, nr int, a, b, c, d uint64) int64 {
	nonblock := uint64(0)
	if o.flags&oNonblock != 0 {
		nonblock = 1
	}
	switch nr {
	case nsBind, nsConnect:
		if r := netAddrIn(a, b); r < 0 {
			return r
		}
		return netCall(o, uint32(nr), a, b, 0, 0, nonblock)
	case nsListen:
		return netCall(o, nsListen, a, 0, 0, 0, 0)
	case nsShutdown:
		r := netCall(o, nsShutdown, a, 0, 0, 0, 0)
		if r == 0 && a != 0 { // SHUT_WR or SHUT_RDWR
			svcObjects[o.pipe].wrShut = true
			wakeAll(waitPoll)
		}
		return r
	case nsAccept:
		if c&^(sockNonblock|sockCloexec) != 0 {
			return -eINVAL
		}
		if r := netAddrOut(a, b); r < 0 {
			return r
		}
		return netCall(o, nsAccept, a, b, c, 0, nonblock)
	case nsGetsockname:
		return netName(o, 0, a, b)
	case nsGetpeername:
		return netName(o, 1, a, b)
	case nsGetsockopt:
		var l int32
		if !copyIn(unsafe.Pointer(&l), uintptr(d), 4) {
			return -eFAULT
		}
		if l < 0 {
			return -eINVAL
		}
		if !userOK(uintptr(c), uintptr(l)) || !userOK(uintptr(d), 4) {
			return -eFAULT
		}
		return netCall(o, nsGetsockopt, a, b, c, d, 0)
	case nsSetsockopt:
		if uint32(d) > 256 {
			return -eINVAL
		}
		if !userOK(uintptr(c), uintptr(uint32(d))) {
			return -eFAULT
		}
		return netCall(o, nsSetsockopt, a, b, c, uint64(uint32(d)), 0)
	}
	return -eOPNOTSUPP
}

// netDgram sends or receives one datagram (for now a synchronous call
// each; streams go through the rings): buf and n the data, addr and alen
// (a pointer to it when receiving) the peer's address or 0.
//
//go:nosplit
func netDgram(o *ofile, send bool, buf, n, flags, addr, alen uint64) int64 {
	if n > 65535 {
		n = 65535
	}
	if !userOK(uintptr(buf), uintptr(n)) {
		return -eFAULT
	}
	if o.flags&oNonblock != 0 {
		flags |= msgDontwait
	}
	if send {
		if addr != 0 {
			if r := netAddrIn(addr, alen); r < 0 {
				return r
			}
		}
		return netCall(o, nsSendto, buf, n, flags, addr, alen)
	}
	if addr != 0 {
		if r := netAddrOut(addr, alen); r < 0 {
			return r
		}
	}
	return netCall(o, nsRecvfrom, buf, n, flags, addr, alen)
}

// netMsg is sendmsg or recvmsg on a network socket: a stream's buffers
// go through the rings; a datagram takes one buffer.
//
//go:nosplit
func netMsg(o *ofile, send bool, mp uintptr, flags uint64) int64 {
	var m msghdr
	if !copyIn(unsafe.Pointer(&m), mp, unsafe.Sizeof(m)) {
		return -eFAULT
	}
	if m.iovlen > 1024 {
		return -eMSGSIZE
	}
	if m.controllen != 0 && send {
		return -eOPNOTSUPP
	}
	u := uio{iov: uintptr(m.iov), cnt: int(m.iovlen)}
	if m.iovlen > 0 && !userOK(u.iov, uintptr(m.iovlen)*16) {
		return -eFAULT
	}
	var r int64
	if !svcObjects[o.pipe].dgram {
		if send {
			r = netSend(o, u)
		} else {
			r = netRecv(o, u)
		}
	} else {
		if m.iovlen > 1 {
			return -eOPNOTSUPP
		}
		var v iovec
		if m.iovlen == 1 {
			v, _ = u.seg(0)
		}
		if send {
			return netDgram(o, true, v.base, v.len, flags, m.name, uint64(m.namelen))
		}
		name, alenp := uint64(0), uint64(0)
		if m.name != 0 {
			name, alenp = m.name, uint64(mp+8)
		}
		r = netDgram(o, false, v.base, v.len, flags, name, alenp)
	}
	if r >= 0 && !send {
		var z uint64
		var fl int32
		if m.name == 0 {
			copyOut(mp+8, unsafe.Pointer(&fl), 4)
		}
		if !copyOut(mp+40, unsafe.Pointer(&z), 8) || !copyOut(mp+48, unsafe.Pointer(&fl), 4) {
			return -eFAULT
		}
	}
	return r
}

// netSend and netRecv move a stream's bytes through the object's rings,
// one buffer after another while each goes through whole; only the first
// may wait or fail with EAGAIN.
//
//go:nosplit
func netSend(o *ofile, u uio) int64 {
	if t := u.total(); t < 0 {
		return t
	}
	done := int64(0)
	for i := 0; i < u.count(); i++ {
		v, ok := u.seg(i)
		if !ok {
			return -eFAULT
		}
		if v.len == 0 {
			continue
		}
		if done > 0 {
			tx := &pipes[svcObjects[o.pipe].tx]
			if tx.wpos-tx.rpos >= pipeSize {
				break
			}
		}
		r := kindOf(o).write(o, uintptr(v.base), uintptr(v.len), -1)
		if r < 0 {
			if done > 0 {
				break
			}
			return r
		}
		done += r
		if uint64(r) < v.len {
			break
		}
	}
	return done
}

//go:nosplit
func netRecv(o *ofile, u uio) int64 {
	if t := u.total(); t < 0 {
		return t
	}
	done := int64(0)
	for i := 0; i < u.count(); i++ {
		v, ok := u.seg(i)
		if !ok {
			return -eFAULT
		}
		if v.len == 0 {
			continue
		}
		if done > 0 {
			rx := &pipes[svcObjects[o.pipe].rx]
			if rx.wpos == rx.rpos {
				break
			}
		}
		r := kindOf(o).read(o, uintptr(v.base), uintptr(v.len), -1)
		if r < 0 {
			if done > 0 {
				break
			}
			return r
		}
		done += r
		if uint64(r) < v.len {
			break
		}
	}
	return done
}

//go:nosplit
func netSendto(o *ofile, f *sysFrame) int64 {
	if svcObjects[o.pipe].dgram {
		return netDgram(o, true, f.rsi, f.rdx, f.r10, f.r8, f.r9)
	}
	return netSend(o, uio{one: iovec{f.rsi, f.rdx}})
}

//go:nosplit
func netRecvfrom(o *ofile, f *sysFrame) int64 {
	if svcObjects[o.pipe].dgram {
		return netDgram(o, false, f.rsi, f.rdx, f.r10, f.r8, f.r9)
	}
	return netRecv(o, uio{one: iovec{f.rsi, f.rdx}})
}
