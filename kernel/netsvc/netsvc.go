// Package netsvc is Amber's network service: AF_INET and AF_INET6 sockets
// on gVisor's TCP/IP stack (gvisor.dev/gvisor/pkg/tcpip), served to the
// program through the kernel's service hand-off (package kernel/service;
// docs/kernel.md, "Network").
//
// vmm build links it into a program whose dependencies include net; its
// init opens the service queue, registers it as the network service and
// starts the stack with a loopback interface (127.0.0.1/8, ::1) and, when
// the machine has one, the virtio-net interface (nic.go). Outside Amber
// (a native run) it does nothing.
//
// The program's socket is a service object: a stream's bytes flow through
// the object's rings (a pump goroutine each way between the rings and the
// gVisor endpoint), control operations are synchronous calls answered
// here, and readiness the rings cannot tell is set with SetEvents.
package netsvc

import (
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/amberos/amber/kernel/service"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Socket operations: the kernel's ns* constants (kernel/netsock.go).
const (
	nsSocket = iota + 1
	nsBind
	nsListen
	nsConnect
	nsAccept
	nsGetsockname
	nsGetpeername
	nsShutdown
	nsGetsockopt
	nsSetsockopt
	nsSendto
	nsRecvfrom
)

// Epoll event bits for SetEvents.
const (
	evIn    = 0x1
	evOut   = 0x4
	evErr   = 0x8
	evHup   = 0x10
	evRdhup = 0x2000
)

const (
	loopNIC = 1
	ethNIC  = 2
)

// pending is a call's result when the call is answered later.
const pending = int64(1) << 62

// Service is the running network service.
type Service struct {
	q     *service.Queue
	stack *stack.Stack

	mu    sync.Mutex
	socks map[service.Handle]*sock
}

var svc *Service

func init() {
	q, err := service.Open()
	if err != nil {
		return // not under Amber
	}
	s, err := start(q)
	if err != nil {
		fmt.Fprintf(os.Stderr, "amber: network: %v\n", err)
		q.Close()
		return
	}
	svc = s
	if debug {
		fmt.Fprintln(os.Stderr, "netsvc: started")
	}
	go s.serve()
}

// NewStack makes the TCP/IP stack with its loopback interface.
func NewStack() (*stack.Stack, error) {
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
		HandleLocal:        true,
	})
	sack := tcpip.TCPSACKEnabled(true)
	st.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	if err := st.CreateNIC(loopNIC, loopback.New()); err != nil {
		return nil, fmt.Errorf("loopback interface: %v", err)
	}
	lo4 := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4([4]byte{127, 0, 0, 1}), PrefixLen: 8}}
	lo6 := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom16([16]byte{15: 1}).WithPrefix()}
	for _, a := range []tcpip.ProtocolAddress{lo4, lo6} {
		if err := st.AddProtocolAddress(loopNIC, a, stack.AddressProperties{}); err != nil {
			return nil, fmt.Errorf("loopback address %v: %v", a.AddressWithPrefix, err)
		}
	}
	st.SetRouteTable([]tcpip.Route{
		{Destination: lo4.AddressWithPrefix.Subnet(), NIC: loopNIC},
		{Destination: lo6.AddressWithPrefix.Subnet(), NIC: loopNIC},
	})
	return st, nil
}

func start(q *service.Queue) (*Service, error) {
	st, err := NewStack()
	if err != nil {
		return nil, err
	}
	s := &Service{q: q, stack: st, socks: map[service.Handle]*sock{}}
	if err := startNIC(s); err != nil {
		fmt.Fprintf(os.Stderr, "amber: network: %v (loopback only)\n", err)
	}
	if err := q.ServeNet(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Service) serve() {
	reqs := make([]service.Request, 64)
	for {
		n, err := s.q.Next(reqs)
		if err != nil {
			fmt.Fprintf(os.Stderr, "amber: network service: %v\n", err)
			return
		}
		for i := range reqs[:n] {
			s.handle(&reqs[i])
		}
	}
}

func (s *Service) lookup(h service.Handle) *sock {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.socks[h]
}

var debug = os.Getenv("AMBER_NETDEBUG") != ""

func (s *Service) handle(r *service.Request) {
	k := s.lookup(r.Handle)
	if debug {
		fmt.Fprintf(os.Stderr, "netsvc: %v sub %d handle %#x args %x\n", r.Kind(), r.Sub(), r.Handle, r.Args)
	}
	switch r.Kind() {
	case service.Write:
		if k != nil {
			k.kick(k.writeCh)
		}
	case service.Read:
		if k != nil {
			k.kick(k.readCh)
		}
	case service.Close:
		if k != nil {
			k.close()
		} else {
			s.q.Drop(r.Handle)
		}
	case service.Sock:
		if r.Sub() == nsSocket { // a notice, not a call
			if s.newSock(r.Handle, int(r.Args[0]), int(r.Args[1]), int(r.Args[2])) < 0 {
				s.q.Drop(r.Handle) // the program's calls fail with EPIPE
			}
			return
		}
		if k == nil {
			s.q.Complete(r.Handle, r.Seq, -int64(syscall.EBADF))
			return
		}
		res := k.call(r)
		if res != pending {
			s.q.Complete(r.Handle, r.Seq, res)
		}
	case service.Call:
		s.q.Complete(r.Handle, r.Seq, -int64(syscall.ENOTTY))
	}
}
