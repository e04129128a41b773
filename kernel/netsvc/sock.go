package netsvc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"syscall"
	"unsafe"

	"github.com/amberos/amber/kernel/service"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// sock is one AF_INET or AF_INET6 socket.
type sock struct {
	s      *Service
	h      service.Handle
	family int
	stream bool
	ep     tcpip.Endpoint
	wq     *waiter.Queue

	mu         sync.Mutex
	listening  bool
	connecting bool
	connected  bool
	closed     bool
	soErr      syscall.Errno
	entry      waiter.Entry
	registered bool
	named      bool
	dead       bool // the write pump saw the connection fail

	// A connected stream's pumps.
	conn    *gonet.TCPConn
	readCh  chan struct{} // the program waits for data
	writeCh chan struct{} // the program wrote
	ctlCh   chan ctl      // shutdown and close, in order with the data

	nl *nlSock // an AF_NETLINK socket (netlink.go); ep is nil then
}

// ctl is a request for the write pump: shutdown(how) or, with close set,
// the program's last close.
type ctl struct {
	close bool
	how   int
	done  func(int64)
}

func (s *Service) newSock(h service.Handle, family, typ, proto int) int64 {
	if family == syscall.AF_NETLINK {
		return s.newNetlink(h, typ, proto)
	}
	k := &sock{s: s, h: h, family: family, readCh: make(chan struct{}, 1), writeCh: make(chan struct{}, 1), ctlCh: make(chan ctl, 4)}
	netProto := ipv4.ProtocolNumber
	if family == syscall.AF_INET6 {
		netProto = ipv6.ProtocolNumber
	}
	var tp tcpip.TransportProtocolNumber
	switch typ {
	case syscall.SOCK_STREAM:
		if proto != 0 && proto != syscall.IPPROTO_TCP {
			return -int64(syscall.EPROTONOSUPPORT)
		}
		tp, k.stream = tcp.ProtocolNumber, true
	case syscall.SOCK_DGRAM:
		if proto != 0 && proto != syscall.IPPROTO_UDP {
			return -int64(syscall.EPROTONOSUPPORT)
		}
		tp = udp.ProtocolNumber
	default:
		return -int64(syscall.ESOCKTNOSUPPORT)
	}
	k.wq = new(waiter.Queue)
	ep, err := s.stack.NewEndpoint(tp, netProto, k.wq)
	if err != nil {
		return -int64(errnoOf(err))
	}
	k.ep = ep
	if !k.stream {
		k.watch(k.dgramEvents)
	}
	s.mu.Lock()
	s.socks[h] = k
	s.mu.Unlock()
	return 0
}

func (k *sock) kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// watch calls f whenever the endpoint's readiness changes (and once now).
func (k *sock) watch(f func()) {
	k.mu.Lock()
	if !k.registered {
		k.entry = waiter.NewFunctionEntry(waiter.EventIn|waiter.EventOut|waiter.EventErr|waiter.EventHUp, func(waiter.EventMask) { f() })
		k.wq.EventRegister(&k.entry)
		k.registered = true
	}
	k.mu.Unlock()
	f()
}

func (k *sock) unwatch() {
	k.mu.Lock()
	if k.registered {
		k.wq.EventUnregister(&k.entry)
		k.registered = false
	}
	k.mu.Unlock()
}

// listenEvents: a listener is readable while a connection waits.
func (k *sock) listenEvents() {
	k.mu.Lock()
	defer k.mu.Unlock()
	on := uint32(0)
	if k.ep.Readiness(waiter.ReadableEvents) != 0 {
		on = evIn
	}
	k.s.q.SetEvents(k.h, on, evIn|evOut)
}

// dgramEvents: a datagram socket is readable while a datagram waits (its
// data does not go through the object's rings).
func (k *sock) dgramEvents() {
	k.mu.Lock()
	defer k.mu.Unlock()
	on := uint32(0)
	if k.ep.Readiness(waiter.ReadableEvents) != 0 {
		on = evIn
	}
	k.s.q.SetEvents(k.h, on, evIn)
}

// mem is n bytes of the program's memory at addr (checked by the core).
func mem(addr, n uint64) []byte {
	if addr == 0 || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&addr))), n)
}

func (k *sock) call(r *service.Request) int64 {
	if k.nl != nil {
		return k.nlCall(r)
	}
	a := r.Args
	switch r.Sub() {
	case nsBind:
		fa, errno := k.parseAddr(mem(a[0], a[1]))
		if errno != 0 {
			return -int64(errno)
		}
		if err := k.ep.Bind(fa); err != nil {
			return -int64(errnoOf(err))
		}
		k.syncNames()
		return 0
	case nsListen:
		if !k.stream {
			return -int64(syscall.EOPNOTSUPP)
		}
		backlog := int(int32(a[0]))
		if backlog <= 0 || backlog > 4096 {
			backlog = 4096
		}
		if err := k.ep.Listen(backlog); err != nil {
			return -int64(errnoOf(err))
		}
		k.mu.Lock()
		k.listening = true
		k.mu.Unlock()
		k.syncNames()
		k.watch(k.listenEvents)
		return 0
	case nsConnect:
		return k.connect(r, mem(a[0], a[1]), a[4] != 0)
	case nsAccept:
		return k.accept(r, a[0], a[1], int(a[2]), a[4] != 0)
	case nsGetsockname, nsGetpeername:
		var fa tcpip.FullAddress
		var err tcpip.Error
		if r.Sub() == nsGetsockname {
			fa, err = k.ep.GetLocalAddress()
		} else {
			fa, err = k.ep.GetRemoteAddress()
		}
		if err != nil {
			return -int64(errnoOf(err))
		}
		k.putAddr(fa, a[0], a[1])
		return 0
	case nsShutdown:
		how := int(a[0])
		if how < 0 || how > 2 {
			return -int64(syscall.EINVAL)
		}
		k.mu.Lock()
		conn := k.conn
		k.mu.Unlock()
		if conn == nil {
			if k.listening || !k.stream {
				var f tcpip.ShutdownFlags
				if how != syscall.SHUT_WR {
					f |= tcpip.ShutdownRead
				}
				if how != syscall.SHUT_RD {
					f |= tcpip.ShutdownWrite
				}
				if err := k.ep.Shutdown(f); err != nil {
					return -int64(errnoOf(err))
				}
				return 0
			}
			return -int64(syscall.ENOTCONN)
		}
		h, seq := r.Handle, r.Seq
		k.mu.Lock()
		dead := k.dead
		k.mu.Unlock()
		if dead {
			return -int64(syscall.ENOTCONN)
		}
		k.ctlCh <- ctl{how: how, done: func(res int64) { k.s.q.Complete(h, seq, res) }}
		return pending
	case nsGetsockopt:
		return k.getsockopt(int(a[0]), int(a[1]), a[2], a[3])
	case nsSetsockopt:
		return k.setsockopt(int(a[0]), int(a[1]), mem(a[2], a[3]))
	case nsSendto:
		return k.sendto(r, a)
	case nsRecvfrom:
		return k.recvfrom(r, a)
	}
	return -int64(syscall.EOPNOTSUPP)
}

func (k *sock) connect(r *service.Request, addr []byte, nonblock bool) int64 {
	fa, errno := k.parseAddr(addr)
	if errno != 0 {
		return -int64(errno)
	}
	if !k.stream {
		if err := k.ep.Connect(fa); err != nil {
			return -int64(errnoOf(err))
		}
		k.syncNames()
		return 0
	}
	k.mu.Lock()
	switch {
	case k.connecting:
		k.mu.Unlock()
		return -int64(syscall.EALREADY)
	case k.connected || k.listening:
		k.mu.Unlock()
		return -int64(syscall.EISCONN)
	}
	k.connecting = true
	k.mu.Unlock()
	err := k.ep.Connect(fa)
	if err == nil {
		k.connected2()
		return 0
	}
	if _, ok := err.(*tcpip.ErrConnectStarted); !ok {
		k.mu.Lock()
		k.connecting = false
		k.mu.Unlock()
		return -int64(errnoOf(err))
	}
	h, seq := r.Handle, r.Seq
	var once sync.Once
	var entry waiter.Entry
	finish := func() {
		if k.ep.Readiness(waiter.WritableEvents|waiter.EventErr|waiter.EventHUp) == 0 {
			return
		}
		once.Do(func() {
			k.wq.EventUnregister(&entry)
			res := int64(0)
			if err := k.ep.LastError(); err != nil {
				errno := errnoOf(err)
				k.mu.Lock()
				k.connecting, k.soErr = false, errno
				k.mu.Unlock()
				k.s.q.SetEvents(k.h, evOut|evErr|evHup, evIn)
				res = -int64(errno)
			} else {
				k.connected2()
			}
			if !nonblock {
				k.s.q.Complete(h, seq, res)
			}
		})
	}
	entry = waiter.NewFunctionEntry(waiter.WritableEvents|waiter.EventErr|waiter.EventHUp, func(waiter.EventMask) { go finish() })
	k.wq.EventRegister(&entry)
	go finish()
	if nonblock {
		return -int64(syscall.EINPROGRESS)
	}
	return pending
}

// connected2 starts a connected stream's pumps.
func (k *sock) connected2() {
	k.mu.Lock()
	k.connecting, k.connected = false, true
	k.conn = gonet.NewTCPConn(k.wq, k.ep)
	k.mu.Unlock()
	k.syncNames()
	k.s.q.SetEvents(k.h, 0, 0)
	go k.readPump()
	go k.writePump()
}

func (k *sock) accept(r *service.Request, addr, alenp uint64, flags int, nonblock bool) int64 {
	if !k.listening {
		return -int64(syscall.EINVAL)
	}
	var peer tcpip.FullAddress
	nep, nwq, err := k.ep.Accept(&peer)
	if err != nil {
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return -int64(errnoOf(err))
		}
		k.listenEvents()
		if nonblock {
			return -int64(syscall.EAGAIN)
		}
		// Wait for a connection; the call is answered then.
		h, seq := r.Handle, r.Seq
		go func() {
			e, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
			k.wq.EventRegister(&e)
			defer k.wq.EventUnregister(&e)
			for {
				nep, nwq, err := k.ep.Accept(&peer)
				if err == nil {
					k.s.q.Complete(h, seq, k.accepted(nep, nwq, peer, addr, alenp, flags))
					return
				}
				if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
					k.s.q.Complete(h, seq, -int64(errnoOf(err)))
					return
				}
				<-ch
			}
		}()
		return pending
	}
	return k.accepted(nep, nwq, peer, addr, alenp, flags)
}

func (k *sock) accepted(nep tcpip.Endpoint, nwq *waiter.Queue, peer tcpip.FullAddress, addr, alenp uint64, flags int) int64 {
	defer k.listenEvents()
	fd, h, err := k.s.q.NewObjectFlags(0, flags&(syscall.O_NONBLOCK|syscall.O_CLOEXEC))
	if err != nil {
		nep.Close()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return -int64(errno)
		}
		return -int64(syscall.ENFILE)
	}
	c := &sock{s: k.s, h: h, family: k.family, stream: true, ep: nep, wq: nwq,
		readCh: make(chan struct{}, 1), writeCh: make(chan struct{}, 1), ctlCh: make(chan ctl, 4)}
	k.s.mu.Lock()
	k.s.socks[h] = c
	k.s.mu.Unlock()
	c.connected2()
	if addr != 0 {
		k.putAddr(peer, addr, alenp)
	}
	return int64(fd)
}

// readPump copies what arrives into the program's ring.
func (k *sock) readPump() {
	buf := make([]byte, 16<<10)
	for {
		n, err := k.conn.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			m, perr := k.s.q.Push(k.h, p)
			if perr == syscall.EAGAIN {
				<-k.readCh // the program drained its ring
				continue
			}
			if perr != nil {
				return // the program closed, or the object is gone
			}
			p = p[m:]
		}
		if err != nil {
			if err != io.EOF {
				// A reset (or a keepalive timeout): the program's
				// read at the end of the data fails with it once.
				errno := errnoOfConn(err)
				k.s.q.End(k.h, errno)
				return
			}
			k.s.q.Push(k.h, nil) // end of data
			return
		}
	}
}

// writePump sends what the program writes; shutdown and close come in
// order with the data, so a response written just before close goes out.
func (k *sock) writePump() {
	buf := make([]byte, 16<<10)
	drain := func() bool { // false: the connection failed and the object is dropped
		for {
			n, err := k.s.q.Pull(k.h, buf)
			if err != nil || n == 0 {
				return true // EAGAIN: nothing more now; 0: the program closed
			}
			if _, err := k.conn.Write(buf[:n]); err != nil {
				// The connection is gone (reset, or closed by the
				// peer): the program's writes fail with EPIPE from
				// now on, its reads end after what was received.
				k.mu.Lock()
				k.soErr, k.dead = errnoOfConn(err), true
				k.mu.Unlock()
				k.s.mu.Lock()
				delete(k.s.socks, k.h)
				k.s.mu.Unlock()
				k.s.q.Drop(k.h)
				k.conn.Close()
				return false
			}
		}
	}
	for {
		select {
		case <-k.writeCh:
			if !drain() {
				return
			}
		case c := <-k.ctlCh:
			if !drain() {
				if !c.close {
					c.done(-int64(syscall.ENOTCONN))
				}
				return
			}
			if c.close {
				k.conn.Close()
				k.s.q.Drop(k.h)
				return
			}
			var err error
			switch c.how {
			case syscall.SHUT_RD:
				err = k.conn.CloseRead()
			case syscall.SHUT_WR:
				err = k.conn.CloseWrite()
			default:
				k.conn.CloseRead()
				err = k.conn.CloseWrite()
			}
			res := int64(0)
			if err != nil {
				res = -int64(syscall.ENOTCONN)
			}
			c.done(res)
		}
	}
}

func (k *sock) close() {
	k.s.mu.Lock()
	delete(k.s.socks, k.h)
	k.s.mu.Unlock()
	if k.nl != nil {
		k.s.q.Drop(k.h)
		return
	}
	k.unwatch()
	k.mu.Lock()
	k.closed = true
	conn := k.conn
	k.mu.Unlock()
	if conn != nil {
		k.ctlCh <- ctl{close: true}
		return
	}
	k.ep.Close()
	k.s.q.Drop(k.h)
}

func (k *sock) sendto(r *service.Request, a [5]uint64) int64 {
	var opts tcpip.WriteOptions
	if a[3] != 0 {
		fa, errno := k.parseAddr(mem(a[3], a[4]))
		if errno != 0 {
			return -int64(errno)
		}
		opts.To = &fa
	}
	var rd bytes.Reader
	rd.Reset(mem(a[0], a[1]))
	n, err := k.ep.Write(&rd, opts)
	if err != nil {
		return -int64(errnoOf(err))
	}
	if !k.named {
		k.named = true
		k.syncNames() // the first send binds an unbound socket
	}
	return n
}

func (k *sock) recvfrom(r *service.Request, a [5]uint64) int64 {
	const msgDontwait, msgPeek, msgTrunc = 0x40, 0x2, 0x20
	try := func() (int64, bool) {
		w := truncWriter(mem(a[0], a[1]))
		res, err := k.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: a[3] != 0, Peek: a[2]&msgPeek != 0})
		if err != nil {
			if _, ok := err.(*tcpip.ErrWouldBlock); ok {
				return 0, false
			}
			return -int64(errnoOf(err)), true
		}
		if a[3] != 0 {
			k.putAddr(res.RemoteAddr, a[3], a[4])
		}
		if a[2]&msgTrunc != 0 {
			return int64(res.Total), true
		}
		return int64(min(uint64(res.Count), a[1])), true // truncWriter counted it all
	}
	n, ok := try()
	k.dgramEvents()
	if ok {
		return n
	}
	if a[2]&msgDontwait != 0 {
		return -int64(syscall.EAGAIN)
	}
	h, seq := r.Handle, r.Seq
	go func() {
		e, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
		k.wq.EventRegister(&e)
		defer k.wq.EventUnregister(&e)
		for {
			if n, ok := try(); ok {
				k.dgramEvents()
				k.s.q.Complete(h, seq, n)
				return
			}
			<-ch
		}
	}()
	return pending
}

// truncWriter takes what fits of a datagram and drops the rest, as
// recvfrom does on Linux (a zero-length buffer consumes the datagram and
// returns 0). gVisor's SliceWriter reports a short write instead, which
// its UDP endpoint turns into EFAULT when nothing fit.
type truncWriter []byte

func (w *truncWriter) Write(b []byte) (int, error) {
	n := copy(*w, b)
	*w = (*w)[n:]
	return len(b), nil
}

// parseAddr reads a sockaddr_in or sockaddr_in6.
func (k *sock) parseAddr(b []byte) (tcpip.FullAddress, syscall.Errno) {
	if len(b) < 2 {
		return tcpip.FullAddress{}, syscall.EINVAL
	}
	switch binary.LittleEndian.Uint16(b) {
	case syscall.AF_INET:
		if len(b) < 8 {
			return tcpip.FullAddress{}, syscall.EINVAL
		}
		fa := tcpip.FullAddress{Port: binary.BigEndian.Uint16(b[2:]), Addr: tcpip.AddrFrom4Slice(b[4:8])}
		if k.family == syscall.AF_INET6 {
			// An AF_INET6 socket takes a v4 address as ::ffff:a.b.c.d.
			var m [16]byte
			m[10], m[11] = 0xff, 0xff
			copy(m[12:], b[4:8])
			fa.Addr = tcpip.AddrFrom16(m)
		}
		if fa.Addr == tcpip.AddrFrom4([4]byte{}) {
			fa.Addr = tcpip.Address{}
		}
		return fa, 0
	case syscall.AF_INET6:
		if k.family != syscall.AF_INET6 {
			return tcpip.FullAddress{}, syscall.EAFNOSUPPORT
		}
		if len(b) < 24 {
			return tcpip.FullAddress{}, syscall.EINVAL
		}
		fa := tcpip.FullAddress{Port: binary.BigEndian.Uint16(b[2:]), Addr: tcpip.AddrFrom16Slice(b[8:24])}
		if fa.Addr == tcpip.AddrFrom16([16]byte{}) {
			fa.Addr = tcpip.Address{}
		}
		return fa, 0
	case syscall.AF_UNSPEC:
		if !k.stream {
			return tcpip.FullAddress{}, 0
		}
	}
	return tcpip.FullAddress{}, syscall.EAFNOSUPPORT
}

// syncNames gives the kernel the socket's addresses.
func (k *sock) syncNames() {
	if fa, err := k.ep.GetLocalAddress(); err == nil {
		k.s.q.SetName(k.h, false, k.sockaddr(fa))
	}
	if fa, err := k.ep.GetRemoteAddress(); err == nil {
		k.s.q.SetName(k.h, true, k.sockaddr(fa))
	}
}

// putAddr writes fa as the socket's family's sockaddr to addr, at most
// *alenp bytes, and its full length to *alenp.
func (k *sock) putAddr(fa tcpip.FullAddress, addr, alenp uint64) {
	b := k.sockaddr(fa)
	lp := (*int32)(*(*unsafe.Pointer)(unsafe.Pointer(&alenp)))
	n := int(*lp)
	if n > len(b) {
		n = len(b)
	}
	copy(mem(addr, uint64(n)), b)
	*lp = int32(len(b))
}

// sockaddr is fa as a sockaddr of the socket's family.
func (k *sock) sockaddr(fa tcpip.FullAddress) []byte {
	var b []byte
	if k.family == syscall.AF_INET6 {
		b = make([]byte, 28)
		binary.LittleEndian.PutUint16(b, syscall.AF_INET6)
		binary.BigEndian.PutUint16(b[2:], fa.Port)
		switch fa.Addr.Len() {
		case 16:
			a := fa.Addr.As16()
			copy(b[8:], a[:])
		case 4:
			a := fa.Addr.As4()
			b[18], b[19] = 0xff, 0xff
			copy(b[20:], a[:])
		}
	} else {
		b = make([]byte, 16)
		binary.LittleEndian.PutUint16(b, syscall.AF_INET)
		binary.BigEndian.PutUint16(b[2:], fa.Port)
		if fa.Addr.Len() == 4 {
			a := fa.Addr.As4()
			copy(b[4:], a[:])
		}
	}
	return b
}
