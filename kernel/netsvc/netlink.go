package netsvc

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/amberos/amber/kernel/service"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// A NETLINK_ROUTE socket answers the two dumps Go's net asks for
// (syscall.NetlinkRIB: RTM_GETLINK for net.Interfaces, RTM_GETADDR for
// the interfaces' addresses) from the stack's interfaces, as Linux lays
// them out. Anything else is answered with NLMSG_ERROR EOPNOTSUPP. It is
// a datagram socket: each sendto queues the replies, each recvfrom takes
// one.
type nlSock struct {
	mu      sync.Mutex
	portID  uint32
	replies [][]byte
	wait    func() // a blocking recvfrom waits for a reply
}

// nlPorts hands out netlink port ids (Linux gives the first socket the
// process id; any unique number will do).
var nlPorts atomic.Uint32

const (
	solNetlink  = 270
	nlmsgHdrLen = 16
	nlmsgError  = 2
	nlmsgDone   = 3
	nlmFMulti   = 0x2
	rtmNewLink  = 16
	rtmGetLink  = 18
	rtmNewAddr  = 20
	rtmGetAddr  = 22
	iflaAddress = 1
	iflaIfname  = 3
	iflaMTU     = 4
	ifaAddress  = 1
	ifaLabel    = 3
	iffUp       = 0x1
	iffLoopback = 0x8
	iffRunning  = 0x40
	iffMulti    = 0x1000
	iffBcast    = 0x2
	arphrdEther = 1
	arphrdLoop  = 772
)

func (s *Service) newNetlink(h service.Handle, typ, proto int) int64 {
	if typ != syscall.SOCK_RAW && typ != syscall.SOCK_DGRAM {
		return -int64(syscall.ESOCKTNOSUPPORT)
	}
	if proto != syscall.NETLINK_ROUTE {
		return -int64(syscall.EPROTONOSUPPORT)
	}
	k := &sock{s: s, h: h, family: syscall.AF_NETLINK, nl: &nlSock{}}
	s.mu.Lock()
	s.socks[h] = k
	s.mu.Unlock()
	return 0
}

func (k *sock) nlCall(r *service.Request) int64 {
	a := r.Args
	n := k.nl
	switch r.Sub() {
	case nsBind:
		b := mem(a[0], a[1])
		if len(b) < 12 || binary.LittleEndian.Uint16(b) != syscall.AF_NETLINK {
			return -int64(syscall.EINVAL)
		}
		if binary.LittleEndian.Uint32(b[8:]) != 0 {
			return -int64(syscall.EOPNOTSUPP) // no multicast groups
		}
		k.nlBind(binary.LittleEndian.Uint32(b[4:]))
		return 0
	case nsSendto:
		k.nlBind(0)
		req := mem(a[0], a[1])
		if len(req) < nlmsgHdrLen {
			return -int64(syscall.EINVAL)
		}
		out := k.nlAnswer(req)
		n.mu.Lock()
		n.replies = append(n.replies, out...)
		w := n.wait
		n.wait = nil
		n.mu.Unlock()
		k.s.q.SetEvents(k.h, evIn, evIn)
		if w != nil {
			w()
		}
		return int64(len(req))
	case nsRecvfrom:
		const msgDontwait, msgPeek, msgTrunc = 0x40, 0x2, 0x20
		try := func() (int64, bool) {
			n.mu.Lock()
			defer n.mu.Unlock()
			if len(n.replies) == 0 {
				return 0, false
			}
			m := n.replies[0]
			if a[2]&msgPeek == 0 {
				n.replies = n.replies[1:]
			}
			if len(n.replies) == 0 {
				k.s.q.SetEvents(k.h, 0, evIn)
			}
			c := copy(mem(a[0], a[1]), m)
			if a[3] != 0 {
				k.putNlAddr(0, a[3], a[4]) // from the kernel
			}
			if a[2]&msgTrunc != 0 {
				return int64(len(m)), true
			}
			return int64(c), true
		}
		if res, ok := try(); ok {
			return res
		}
		if a[2]&msgDontwait != 0 {
			return -int64(syscall.EAGAIN)
		}
		h, seq := r.Handle, r.Seq
		n.mu.Lock()
		n.wait = func() {
			res, _ := try()
			k.s.q.Complete(h, seq, res)
		}
		n.mu.Unlock()
		return pending
	case nsGetsockopt:
		if int(a[0]) != syscall.SOL_SOCKET {
			return -int64(syscall.ENOPROTOOPT)
		}
		v := uint32(0)
		switch int(a[1]) {
		case syscall.SO_TYPE:
			v = syscall.SOCK_RAW
		case syscall.SO_DOMAIN:
			v = syscall.AF_NETLINK
		case syscall.SO_RCVBUF, syscall.SO_SNDBUF:
			v = 212992 // Linux's default
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], v)
		putOpt(b[:], a[2], a[3])
		return 0
	case nsSetsockopt:
		if int(a[0]) == syscall.SOL_SOCKET || int(a[0]) == solNetlink {
			return 0 // buffer sizes, NETLINK_EXT_ACK, ...: accepted, not modelled
		}
		return -int64(syscall.ENOPROTOOPT)
	case nsConnect:
		return 0 // to the kernel, the only peer there is
	}
	return -int64(syscall.EOPNOTSUPP)
}

// nlBind gives the socket its port id (0: one of its own) once and
// records its address for getsockname.
func (k *sock) nlBind(want uint32) {
	n := k.nl
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.portID != 0 {
		return
	}
	if want == 0 {
		want = nlPorts.Add(1) + 1<<20 // clear of pids
	}
	n.portID = want
	k.s.q.SetName(k.h, false, nlAddr(want))
}

func nlAddr(port uint32) []byte {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint16(b, syscall.AF_NETLINK)
	binary.LittleEndian.PutUint32(b[4:], port)
	return b
}

func (k *sock) putNlAddr(port uint32, addr, alenp uint64) {
	b := nlAddr(port)
	lp := mem(alenp, 4)
	c := min(int(int32(binary.LittleEndian.Uint32(lp))), len(b))
	copy(mem(addr, uint64(max(c, 0))), b)
	binary.LittleEndian.PutUint32(lp, uint32(len(b)))
}

// nlAnswer is the datagrams that answer request req.
func (k *sock) nlAnswer(req []byte) [][]byte {
	typ := binary.LittleEndian.Uint16(req[4:])
	flags := binary.LittleEndian.Uint16(req[6:])
	seq := binary.LittleEndian.Uint32(req[8:])
	port := k.nl.portID
	var msgs []byte
	switch typ {
	case rtmGetLink:
		for _, l := range k.links() {
			msgs = append(msgs, nlMsg(rtmNewLink, nlmFMulti, seq, port, l)...)
		}
	case rtmGetAddr:
		for _, a := range k.addrs() {
			msgs = append(msgs, nlMsg(rtmNewAddr, nlmFMulti, seq, port, a)...)
		}
	default:
		// NLMSG_ERROR: the negative errno, then the request's header.
		body := make([]byte, 4+nlmsgHdrLen)
		e := int32(-int32(syscall.EOPNOTSUPP))
		binary.LittleEndian.PutUint32(body, uint32(e))
		copy(body[4:], req[:nlmsgHdrLen])
		return [][]byte{nlMsg(nlmsgError, 0, seq, port, body)}
	}
	_ = flags // every GET is answered as a dump (NLM_F_DUMP), as Go asks
	done := nlMsg(nlmsgDone, nlmFMulti, seq, port, make([]byte, 4))
	return [][]byte{msgs, done}
}

// nlMsg is one netlink message, padded to 4 bytes.
func nlMsg(typ, flags uint16, seq, port uint32, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(body)+3)
	binary.LittleEndian.PutUint32(b, uint32(nlmsgHdrLen+len(body)))
	binary.LittleEndian.PutUint16(b[4:], typ)
	binary.LittleEndian.PutUint16(b[6:], flags)
	binary.LittleEndian.PutUint32(b[8:], seq)
	binary.LittleEndian.PutUint32(b[12:], port)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// rtAttr appends a route attribute, padded to 4 bytes.
func rtAttr(b []byte, typ uint16, v []byte) []byte {
	var h [4]byte
	binary.LittleEndian.PutUint16(h[:], uint16(4+len(v)))
	binary.LittleEndian.PutUint16(h[2:], typ)
	b = append(append(b, h[:]...), v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nics is the stack's interfaces in index order, with Linux's names.
type nicDesc struct {
	id   tcpip.NICID
	name string
	loop bool
	up   bool
	mtu  uint32
	mac  tcpip.LinkAddress
	addr []tcpip.ProtocolAddress
}

func (k *sock) nics() []nicDesc {
	var out []nicDesc
	for id, info := range k.s.stack.NICInfo() {
		name := info.Name
		if name == "" {
			name = "lo"
			if !info.Flags.Loopback {
				name = fmt.Sprintf("eth%d", int(id)-ethNIC)
			}
		}
		out = append(out, nicDesc{id: id, name: name, loop: info.Flags.Loopback, up: info.Flags.Up,
			mtu: info.MTU, mac: info.LinkAddress, addr: info.ProtocolAddresses})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// links is an RTM_NEWLINK body per interface: struct ifinfomsg and the
// name, MTU and hardware address.
func (k *sock) links() [][]byte {
	var out [][]byte
	for _, n := range k.nics() {
		b := make([]byte, 16)
		b[0] = syscall.AF_UNSPEC
		flags := uint32(iffMulti)
		arphrd := uint16(arphrdEther)
		if n.loop {
			flags, arphrd = iffLoopback, arphrdLoop
		} else {
			flags |= iffBcast
		}
		if n.up {
			flags |= iffUp | iffRunning
		}
		binary.LittleEndian.PutUint16(b[2:], arphrd)
		binary.LittleEndian.PutUint32(b[4:], uint32(n.id))
		binary.LittleEndian.PutUint32(b[8:], flags)
		b = rtAttr(b, iflaIfname, append([]byte(n.name), 0))
		var mtu [4]byte
		binary.LittleEndian.PutUint32(mtu[:], n.mtu)
		b = rtAttr(b, iflaMTU, mtu[:])
		mac := []byte(n.mac)
		if len(mac) == 0 {
			mac = make([]byte, 6) // loopback: 00:00:00:00:00:00, as Linux
		}
		b = rtAttr(b, iflaAddress, mac)
		out = append(out, b)
	}
	return out
}

// addrs is an RTM_NEWADDR body per IPv4 and IPv6 address: struct
// ifaddrmsg and the address.
func (k *sock) addrs() [][]byte {
	var out [][]byte
	for _, n := range k.nics() {
		for _, pa := range n.addr {
			var fam byte
			switch pa.Protocol {
			case ipv4.ProtocolNumber:
				fam = syscall.AF_INET
			case ipv6.ProtocolNumber:
				fam = syscall.AF_INET6
			default:
				continue
			}
			b := make([]byte, 8)
			b[0], b[1] = fam, byte(pa.AddressWithPrefix.PrefixLen)
			if n.loop {
				b[3] = 254 // RT_SCOPE_HOST
			}
			binary.LittleEndian.PutUint32(b[4:], uint32(n.id))
			b = rtAttr(b, ifaAddress, pa.AddressWithPrefix.Address.AsSlice())
			if fam == syscall.AF_INET {
				b = rtAttr(b, ifaLabel, append([]byte(n.name), 0))
			}
			out = append(out, b)
		}
	}
	return out
}
