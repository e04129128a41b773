// Package usernet is the user-mode network behind vmm run --net user: a
// rootless network with QEMU's user-network addresses. It runs in its own
// process, vmm-net (tools/vmmnet), which the VMM starts only for --net
// user and talks to over a socket pair (vmm/netproc.go): gVisor's stack
// and the forwarders cost every start of a process that links them a
// few milliseconds of package initialisation, which vmm run without
// --net must not pay.
//
// The guest's frames go into a gVisor TCP/IP stack that is the gateway
// (10.0.2.2, and 10.0.2.3 for DNS): it answers ARP, this package's DHCP
// server answers DHCP, and gvisor-tap-vsock's forwarders (the NAT of
// podman machine's gvproxy) turn the guest's TCP and UDP flows into host
// sockets (10.0.2.2 is the host's 127.0.0.1, 10.0.2.3 the host's name
// server, as under QEMU), and its port forwarder listens on host
// addresses for hostfwd and connects through the stack to the guest. The
// stack's link is a channel endpoint: a frame is handed to the stack on
// the caller's goroutine, and frames for the guest are read from the
// channel.
//
// gvisor-tap-vsock's own VirtualNetwork (its switch and services) is not
// used: its switch links github.com/google/gopacket/layers, whose package
// initialisation alone took tens of milliseconds; its DHCP server is in
// the same package. Why this and not passt or hand-written NAT:
// docs/architecture.md.
package usernet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/amberos/amber/vmm"
	"github.com/containers/gvisor-tap-vsock/pkg/services/forwarder"
	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/sirupsen/logrus"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	ethHeaderSize    = 14
	maxFrameOverhead = ethHeaderSize + 4 // and a VLAN tag
	UserNetMTU       = vmm.UserNetMTU
	UserNetGuest     = vmm.UserNetGuest
)

// Net is a user-mode network for one guest: frames in (Send), frames
// out (Recv).
type Net struct {
	stack    *stack.Stack
	link     *channel.Endpoint
	ports    *forwarder.PortsForwarder
	forwards []vmm.HostFwd
	mac      net.HardwareAddr
	dhcp     *gonet.UDPConn
	ctx      context.Context
	cancel   context.CancelFunc
	once     sync.Once
}

// userNetQueue bounds the frames queued for the guest: the stack's
// writes to a full queue are dropped (as a NIC whose ring is full drops).
const userNetQueue = 512

// Addresses of the user network in the stack's types.
var (
	userNetGatewayMAC = tcpip.LinkAddress("\x52\x55\x0a\x00\x02\x02")
	userNetGatewayIP  = tcpip.AddrFrom4([4]byte{10, 0, 2, 2})
	userNetDNSIP      = tcpip.AddrFrom4([4]byte{10, 0, 2, 3})
	userNetGuestIP    = tcpip.AddrFrom4([4]byte{10, 0, 2, 15})
)

// New starts a user-mode network for a guest with the given MAC
// (which gets 10.0.2.15 by DHCP) and host forwards. A forward whose host
// address cannot be listened on is an error here.
func New(mac net.HardwareAddr, forwards []vmm.HostFwd) (_ *Net, err error) {
	// gvisor-tap-vsock logs through logrus to stderr, which is the
	// guest's; its messages are for gvproxy's operators.
	logrus.SetOutput(io.Discard)
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// SACK, and buffers that grow with the flow (gVisor's defaults stop
	// at 4 MiB, a bulk flow's window at this MTU wants more).
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 16 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 16 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
	link := channel.New(userNetQueue, UserNetMTU+ethHeaderSize, userNetGatewayMAC)
	if e := s.CreateNIC(1, ethernet.New(link)); e != nil {
		return nil, fmt.Errorf("user-mode network: %s", e)
	}
	for _, a := range []tcpip.Address{userNetGatewayIP, userNetDNSIP} {
		if e := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: a.WithPrefix()}, stack.AddressProperties{}); e != nil {
			return nil, fmt.Errorf("user-mode network: %s", e)
		}
	}
	// Spoofing and promiscuous mode: the stack answers for every address
	// the guest talks to, as the far end of each NATed flow.
	s.SetSpoofing(1, true)
	s.SetPromiscuousMode(1, true)
	subnet, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{10, 0, 2, 0}), tcpip.MaskFromBytes([]byte{255, 255, 255, 0}))
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: 1}})
	nat := map[tcpip.Address]tcpip.Address{
		userNetGatewayIP: tcpip.AddrFrom4([4]byte{127, 0, 0, 1}),
		userNetDNSIP:     tcpip.AddrFrom4Slice(net.ParseIP(hostNameserver()).To4()),
	}
	var natLock sync.Mutex
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, forwarder.TCP(s, nat, &natLock, false).HandlePacket)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, forwarder.UDP(s, nat, &natLock, false).HandlePacket)

	ctx, cancel := context.WithCancel(context.Background())
	u := &Net{stack: s, link: link, ports: forwarder.NewPortsForwarder(s), mac: mac, ctx: ctx, cancel: cancel}
	if u.dhcp, err = u.listenDHCP(); err != nil {
		cancel()
		return nil, err
	}
	go u.serveDHCP()
	for _, f := range forwards {
		g, err := u.expose(f)
		if err != nil {
			u.Close()
			return nil, err
		}
		u.forwards = append(u.forwards, g)
	}
	return u, nil
}

// Forwards returns the forwards as they listen: a host port 0 asked for
// is the port the kernel chose.
func (u *Net) Forwards() []vmm.HostFwd { return append([]vmm.HostFwd(nil), u.forwards...) }

// expose starts forward f. Host port 0 is a free port the kernel
// chooses: bound once to learn it, then exposed (the forwarder has no
// way to hand back the port its own listener got); should another
// program take the port in between, another is tried.
func (u *Net) expose(f vmm.HostFwd) (vmm.HostFwd, error) {
	for try := 0; ; try++ {
		g := f
		if f.HostPort == 0 {
			p, err := freePort(f)
			if err != nil {
				return f, fmt.Errorf("hostfwd %v: a free host port: %w", f, err)
			}
			g.HostPort = p
		}
		proto, local, remote := u.forwardAddrs(g)
		err := u.ports.Expose(proto, local, remote)
		if err == nil {
			return g, nil
		}
		if f.HostPort != 0 || try == 7 {
			return f, fmt.Errorf("hostfwd %s:%s: %w", proto, local, err)
		}
	}
}

// freePort returns a port on f's host address that the kernel gives a
// socket bound to port 0.
func freePort(f vmm.HostFwd) (int, error) {
	addr := net.JoinHostPort(f.HostAddr, "0")
	if f.UDP {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// forwardAddrs is a forward in the port forwarder's terms.
func (u *Net) forwardAddrs(f vmm.HostFwd) (types.TransportProtocol, string, string) {
	ha, ga := f.HostAddr, f.GuestAddr
	if ha == "" {
		ha = "0.0.0.0"
	}
	if ga == "" {
		ga = UserNetGuest
	}
	proto := types.TCP
	if f.UDP {
		proto = types.UDP
	}
	return proto, net.JoinHostPort(ha, strconv.Itoa(f.HostPort)), net.JoinHostPort(ga, strconv.Itoa(f.GuestPort))
}

// hostNameserver is the host's first IPv4 name server (QEMU's user
// network forwards 10.0.2.3 to it too); 127.0.0.1 without one.
func hostNameserver() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "nameserver" {
				if ip := net.ParseIP(f[1]); ip != nil && ip.To4() != nil {
					return f[1]
				}
			}
		}
	}
	return "127.0.0.1"
}

func (u *Net) MTU() int       { return UserNetMTU }
func (u *Net) Verified() bool { return true }

var errNetClosed = errors.New("network closed")

// Send hands the frame to the stack on the caller's goroutine.
func (u *Net) Send(frame []byte) error {
	if u.ctx.Err() != nil {
		return errNetClosed
	}
	if len(frame) < ethHeaderSize || len(frame) > UserNetMTU+maxFrameOverhead {
		return fmt.Errorf("frame of %d bytes", len(frame))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	u.link.InjectInbound(0, pkt) // the Ethernet endpoint reads the type
	pkt.DecRef()
	return nil
}

func (u *Net) Recv(buf []byte) (int, error) {
	pkt := u.link.ReadContext(u.ctx)
	if pkt == nil {
		return 0, errNetClosed
	}
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(buf[n:], s)
	}
	pkt.DecRef()
	return n, nil
}

// Close stops the port forwards (their host listeners), the DHCP server
// and the stack.
func (u *Net) Close() error {
	u.once.Do(func() {
		u.cancel()
		for _, f := range u.forwards {
			proto, local, _ := u.forwardAddrs(f)
			u.ports.Unexpose(proto, local)
		}
		u.dhcp.Close()
		u.link.Close()
		u.stack.Close()
	})
	return nil
}

// listenDHCP binds the DHCP server's port on the stack, broadcasts
// allowed (a client without an address is answered by broadcast).
func (u *Net) listenDHCP() (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, e := u.stack.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if e != nil {
		return nil, fmt.Errorf("user-mode network: DHCP: %s", e)
	}
	ep.SocketOptions().SetBroadcast(true)
	if e := ep.Bind(tcpip.FullAddress{NIC: 1, Port: 67}); e != nil {
		ep.Close()
		return nil, fmt.Errorf("user-mode network: DHCP: %s", e)
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// serveDHCP answers DISCOVER with an OFFER and REQUEST with an ACK of
// 10.0.2.15 for the VM's MAC (other clients get nothing: the network has
// one guest).
func (u *Net) serveDHCP() {
	buf := make([]byte, 1500)
	for {
		n, _, err := u.dhcp.ReadFrom(buf)
		if err != nil {
			return
		}
		reply := dhcpReply(buf[:n], u.mac)
		if reply == nil {
			continue
		}
		u.dhcp.WriteTo(reply, &net.UDPAddr{IP: net.IPv4bcast, Port: 68})
	}
}

// dhcpReply builds the answer to a DHCP request (RFC 2131, 2132), or nil.
func dhcpReply(req []byte, mac net.HardwareAddr) []byte {
	const cookie = 0x63825363
	if len(req) < 240 || req[0] != 1 || req[1] != 1 || req[2] != 6 || binary.BigEndian.Uint32(req[236:]) != cookie {
		return nil
	}
	if !bytes.Equal(req[28:34], mac) {
		return nil
	}
	var typ byte
	for o := req[240:]; len(o) >= 2 && o[0] != 255; {
		if o[0] == 0 {
			o = o[1:]
			continue
		}
		if len(o) < 2+int(o[1]) {
			return nil
		}
		if o[0] == 53 && o[1] == 1 {
			typ = o[2]
		}
		o = o[2+int(o[1]):]
	}
	var answer byte
	switch typ {
	case 1: // DISCOVER
		answer = 2 // OFFER
	case 3: // REQUEST
		answer = 5 // ACK
	default:
		return nil
	}
	r := make([]byte, 240, 300)
	r[0], r[1], r[2] = 2, 1, 6               // BOOTREPLY, Ethernet
	copy(r[4:8], req[4:8])                   // xid
	copy(r[10:12], req[10:12])               // flags
	copy(r[16:20], userNetGuestIP.AsSlice()) // yiaddr
	copy(r[20:24], userNetGatewayIP.AsSlice())
	copy(r[24:28], req[24:28]) // giaddr
	copy(r[28:44], req[28:44]) // chaddr
	binary.BigEndian.PutUint32(r[236:], cookie)
	gw, dns := userNetGatewayIP.AsSlice(), userNetDNSIP.AsSlice()
	r = append(r, 53, 1, answer)
	r = append(r, 54, 4, gw[0], gw[1], gw[2], gw[3])    // server identifier
	r = append(r, 51, 4, 0, 1, 0x51, 0x80)              // lease: a day
	r = append(r, 1, 4, 255, 255, 255, 0)               // subnet mask
	r = append(r, 3, 4, gw[0], gw[1], gw[2], gw[3])     // router
	r = append(r, 6, 4, dns[0], dns[1], dns[2], dns[3]) // DNS
	return append(r, 255)
}
