package usernet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/amberos/amber/vmm"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	gvchecksum "gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// The user-mode network end to end, without a guest, without a guest: the
// test plays the guest's side of the wire, sending frames built with
// gVisor's header package to the backend and checking what the network
// answers (ARP, DHCP, a TCP connection NATed to a host listener, a host
// connection through hostfwd arriving as a SYN).

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// backend is what the tests use of a Net (and of the fake guest's end).
type backend interface {
	Send([]byte) error
	Recv([]byte) (int, error)
	MTU() int
	Close() error
}

// checksum is the Internet checksum's one's-complement sum of b added to
// initial, not complemented.
func checksum(b []byte, initial uint32) uint16 {
	return gvchecksum.Checksum(b, uint16(initial))
}

var (
	guestIP   = tcpip.AddrFrom4([4]byte{10, 0, 2, 15})
	gatewayIP = tcpip.AddrFrom4([4]byte{10, 0, 2, 2})
	guestLink = tcpip.LinkAddress(testMAC)
)

// wire is the guest's end of a backend: frames received are parsed into
// a channel by a goroutine.
type wire struct {
	t      *testing.T
	be     backend
	frames chan []byte
}

func newWire(t *testing.T, be backend) *wire {
	w := &wire{t: t, be: be, frames: make(chan []byte, 1024)}
	go func() {
		buf := make([]byte, be.MTU()+maxFrameOverhead)
		for {
			n, err := be.Recv(buf)
			if err != nil {
				close(w.frames)
				return
			}
			w.frames <- bytes.Clone(buf[:n])
		}
	}()
	t.Cleanup(func() { be.Close() })
	return w
}

func (w *wire) send(frame []byte) {
	w.t.Helper()
	if err := w.be.Send(frame); err != nil {
		w.t.Fatal(err)
	}
}

// expect waits for a frame match accepts (others are skipped); the
// deadline only bounds a failing test.
func (w *wire) expect(what string, match func([]byte) bool) []byte {
	w.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-w.frames:
			if !ok {
				w.t.Fatalf("%s: backend closed", what)
			}
			if match(f) {
				return f
			}
		case <-timeout:
			w.t.Fatalf("%s: no such frame from the network", what)
		}
	}
}

func ethFrame(dst tcpip.LinkAddress, typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: guestLink, DstAddr: dst, Type: typ})
	copy(f[header.EthernetMinimumSize:], payload)
	return f
}

func arpRequest(target tcpip.Address) []byte {
	a := header.ARP(make([]byte, header.ARPSize))
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), testMAC)
	copy(a.ProtocolAddressSender(), guestIP.AsSlice())
	copy(a.ProtocolAddressTarget(), target.AsSlice())
	return ethFrame(header.EthernetBroadcastAddress, header.ARPProtocolNumber, a)
}

func arpReply(to tcpip.LinkAddress, toIP tcpip.Address) []byte {
	a := header.ARP(make([]byte, header.ARPSize))
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPReply)
	copy(a.HardwareAddressSender(), testMAC)
	copy(a.ProtocolAddressSender(), guestIP.AsSlice())
	copy(a.HardwareAddressTarget(), []byte(to))
	copy(a.ProtocolAddressTarget(), toIP.AsSlice())
	return ethFrame(to, header.ARPProtocolNumber, a)
}

// ipv4 wraps an L4 payload (its checksum done by the caller) in IPv4.
func ipv4Packet(src, dst tcpip.Address, proto tcpip.TransportProtocolNumber, l4 []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(l4))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], l4)
	return b
}

func udpPacket(src, dst tcpip.Address, sport, dport uint16, payload []byte) []byte {
	u := header.UDP(make([]byte, header.UDPMinimumSize+len(payload)))
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(u)))
	u.SetChecksum(^checksum(u, uint32(xsum)))
	return ipv4Packet(src, dst, header.UDPProtocolNumber, u)
}

func tcpPacket(src, dst tcpip.Address, sport, dport uint16, seq, ack uint32, flags header.TCPFlags) []byte {
	tc := header.TCP(make([]byte, header.TCPMinimumSize))
	tc.Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tc)))
	tc.SetChecksum(^checksum(tc, uint32(xsum)))
	return ipv4Packet(src, dst, header.TCPProtocolNumber, tc)
}

// parseIPv4 returns the IPv4 packet of an Ethernet frame, or nil.
func parseIPv4(f []byte) header.IPv4 {
	eth := header.Ethernet(f)
	if len(f) < header.EthernetMinimumSize+header.IPv4MinimumSize || eth.Type() != header.IPv4ProtocolNumber {
		return nil
	}
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) {
		return nil
	}
	return ip
}

// dhcpDiscover is a BOOTP request with the DHCP DISCOVER option (RFC 2131).
func dhcpDiscover(xid uint32) []byte {
	b := make([]byte, 240, 300)
	b[0], b[1], b[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, 6-byte addresses
	binary.BigEndian.PutUint32(b[4:], xid)
	binary.BigEndian.PutUint16(b[10:], 0x8000) // broadcast reply
	copy(b[28:], testMAC)
	binary.BigEndian.PutUint32(b[236:], 0x63825363) // magic cookie
	b = append(b, 53, 1, 1)                         // DHCPDISCOVER
	b = append(b, 55, 3, 1, 3, 6)                   // ask: mask, router, DNS
	return append(b, 255)
}

// dhcpOption returns option code of a BOOTP reply.
func dhcpOption(b []byte, code byte) []byte {
	o := b[240:]
	for len(o) >= 2 && o[0] != 255 {
		if o[0] == 0 { // pad
			o = o[1:]
			continue
		}
		if len(o) < 2+int(o[1]) {
			return nil
		}
		if o[0] == code {
			return o[2 : 2+int(o[1])]
		}
		o = o[2+int(o[1]):]
	}
	return nil
}

func TestUserNet(t *testing.T) {
	// A host service for the forward: the guest's port 80 is reached at
	// a free host port.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fwdPort := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	be, err := New(testMAC, []vmm.HostFwd{{HostAddr: "127.0.0.1", HostPort: fwdPort, GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	w := newWire(t, be)
	if !be.Verified() || be.MTU() != UserNetMTU {
		t.Errorf("verified %v MTU %d", be.Verified(), be.MTU())
	}

	// ARP: the gateway and the DNS address answer with the gateway's MAC.
	var gwMAC tcpip.LinkAddress
	for _, ip := range []tcpip.Address{gatewayIP, tcpip.AddrFrom4([4]byte{10, 0, 2, 3})} {
		w.send(arpRequest(ip))
		f := w.expect("ARP reply for "+ip.String(), func(f []byte) bool {
			eth := header.Ethernet(f)
			if eth.Type() != header.ARPProtocolNumber {
				return false
			}
			a := header.ARP(f[header.EthernetMinimumSize:])
			return a.IsValid() && a.Op() == header.ARPReply && bytes.Equal(a.ProtocolAddressSender(), ip.AsSlice())
		})
		a := header.ARP(f[header.EthernetMinimumSize:])
		if header.Ethernet(f).DestinationAddress() != guestLink || !bytes.Equal(a.HardwareAddressTarget(), testMAC) {
			t.Errorf("ARP reply for %v not addressed to the guest", ip)
		}
		gwMAC = tcpip.LinkAddress(a.HardwareAddressSender())
	}

	// DHCP: the guest's MAC is offered 10.0.2.15, gateway 10.0.2.2.
	zero := tcpip.AddrFrom4([4]byte{})
	bcast := tcpip.AddrFrom4([4]byte{255, 255, 255, 255})
	w.send(ethFrame(header.EthernetBroadcastAddress, header.IPv4ProtocolNumber, udpPacket(zero, bcast, 68, 67, dhcpDiscover(0x1234))))
	f := w.expect("DHCP offer", func(f []byte) bool {
		ip := parseIPv4(f)
		if ip == nil || ip.TransportProtocol() != header.UDPProtocolNumber {
			return false
		}
		u := header.UDP(ip.Payload())
		return u.DestinationPort() == 68 && len(u.Payload()) >= 240 && binary.BigEndian.Uint32(u.Payload()[4:]) == 0x1234
	})
	offer := header.UDP(parseIPv4(f).Payload()).Payload()
	if yi := net.IP(offer[16:20]); !yi.Equal(net.ParseIP(UserNetGuest)) {
		t.Errorf("offered %v, want %s", yi, UserNetGuest)
	}
	if mt := dhcpOption(offer, 53); len(mt) != 1 || mt[0] != 2 {
		t.Errorf("DHCP message type %v, want OFFER (2)", mt)
	}
	if r := dhcpOption(offer, 3); !net.IP(r).Equal(net.ParseIP(vmm.UserNetGateway)) {
		t.Errorf("router %v", net.IP(r))
	}
	if r := dhcpOption(offer, 6); !net.IP(r).Equal(net.ParseIP(vmm.UserNetDNS)) {
		t.Errorf("DNS server %v", net.IP(r))
	}
	// Another MAC gets no answer; a REQUEST from ours an ACK.
	other := dhcpDiscover(0x5678)
	other[28] ^= 2
	w.send(ethFrame(header.EthernetBroadcastAddress, header.IPv4ProtocolNumber, udpPacket(zero, bcast, 68, 67, other)))
	req := dhcpDiscover(0x9abc)
	req[242] = 3 // REQUEST
	w.send(ethFrame(header.EthernetBroadcastAddress, header.IPv4ProtocolNumber, udpPacket(zero, bcast, 68, 67, req)))
	f = w.expect("DHCP ack", func(f []byte) bool {
		ip := parseIPv4(f)
		if ip == nil || ip.TransportProtocol() != header.UDPProtocolNumber {
			return false
		}
		p := header.UDP(ip.Payload()).Payload()
		if len(p) >= 240 && binary.BigEndian.Uint32(p[4:]) == 0x5678 {
			t.Error("DHCP answered a MAC that is not the guest's")
		}
		return len(p) >= 240 && binary.BigEndian.Uint32(p[4:]) == 0x9abc
	})
	if mt := dhcpOption(header.UDP(parseIPv4(f).Payload()).Payload(), 53); len(mt) != 1 || mt[0] != 5 {
		t.Errorf("DHCP message type %v, want ACK (5)", mt)
	}

	// NAT: a SYN to the gateway's address reaches a host listener on
	// 127.0.0.1 (QEMU's 10.0.2.2 is the host), and the guest gets the
	// SYN-ACK only because the host accepted.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := host.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	hostPort := uint16(host.Addr().(*net.TCPAddr).Port)
	w.send(ethFrame(gwMAC, header.IPv4ProtocolNumber, tcpPacket(guestIP, gatewayIP, 40000, hostPort, 1000, 0, header.TCPFlagSyn)))
	f = w.expect("SYN-ACK through the NAT", func(f []byte) bool {
		ip := parseIPv4(f)
		if ip == nil || ip.TransportProtocol() != header.TCPProtocolNumber {
			return false
		}
		tc := header.TCP(ip.Payload())
		return tc.DestinationPort() == 40000 && tc.Flags() == header.TCPFlagSyn|header.TCPFlagAck
	})
	if tc := header.TCP(parseIPv4(f).Payload()); tc.AckNumber() != 1001 || tc.SourcePort() != hostPort {
		t.Errorf("SYN-ACK acks %d from port %d", tc.AckNumber(), tc.SourcePort())
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("the host listener saw no connection")
	}

	// hostfwd: a host connection to the forwarded port arrives at the
	// guest as a SYN to port 80 (after an ARP for the guest's address,
	// answered here).
	go func() {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fwdPort), 20*time.Second)
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	f = w.expect("ARP request for the guest or SYN to port 80", func(f []byte) bool {
		eth := header.Ethernet(f)
		if eth.Type() == header.ARPProtocolNumber {
			a := header.ARP(f[header.EthernetMinimumSize:])
			if a.IsValid() && a.Op() == header.ARPRequest && bytes.Equal(a.ProtocolAddressTarget(), guestIP.AsSlice()) {
				w.send(arpReply(eth.SourceAddress(), tcpip.AddrFrom4Slice(a.ProtocolAddressSender())))
			}
			return false
		}
		ip := parseIPv4(f)
		if ip == nil || ip.TransportProtocol() != header.TCPProtocolNumber || ip.DestinationAddress() != guestIP {
			return false
		}
		tc := header.TCP(ip.Payload())
		return tc.DestinationPort() == 80 && tc.Flags()&header.TCPFlagSyn != 0
	})
	if header.Ethernet(f).DestinationAddress() != guestLink {
		t.Errorf("forwarded SYN sent to %v", header.Ethernet(f).DestinationAddress())
	}

	// Close frees the forward's host port.
	be.Close()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", fwdPort))
	if err != nil {
		t.Fatalf("the forward's port is still held after Close: %v", err)
	}
	ln.Close()
}

// A forward on a host address that cannot be bound fails NewUserNet.
func TestUserNetBadForward(t *testing.T) {
	_, err := New(testMAC, []vmm.HostFwd{{HostAddr: "192.0.2.1", HostPort: 8080, GuestPort: 80}})
	if err == nil {
		t.Fatal("forward on an address this host does not have was accepted")
	}
}

// BenchmarkUserNetFrames: frames through the user-mode network and
// back: a UDP datagram from the "guest" to a host socket through the NAT,
// echoed back to the guest. Reports frames per second each way.
func BenchmarkUserNetFrames(b *testing.B) {
	be, err := New(testMAC, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	host, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, a, err := host.ReadFrom(buf)
			if err != nil {
				return
			}
			host.WriteTo(buf[:n], a)
		}
	}()
	port := uint16(host.LocalAddr().(*net.UDPAddr).Port)
	// Learn the gateway's MAC.
	be.Send(arpRequest(gatewayIP))
	buf := make([]byte, be.MTU()+maxFrameOverhead)
	var gwMAC tcpip.LinkAddress
	for gwMAC == "" {
		n, err := be.Recv(buf)
		if err != nil {
			b.Fatal(err)
		}
		if header.Ethernet(buf[:n]).Type() == header.ARPProtocolNumber {
			gwMAC = tcpip.LinkAddress(header.ARP(buf[header.EthernetMinimumSize:n]).HardwareAddressSender())
		}
	}
	payload := make([]byte, 1400)
	frame := ethFrame(gwMAC, header.IPv4ProtocolNumber, udpPacket(guestIP, gatewayIP, 40001, port, payload))
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	const window = 32 // datagrams in flight
	inFlight := 0
	for i := 0; i < b.N; i++ {
		be.Send(frame)
		inFlight++
		for inFlight >= window || (i == b.N-1 && inFlight > 0) {
			n, err := be.Recv(buf)
			if err != nil {
				b.Fatal(err)
			}
			if ip := parseIPv4(buf[:n]); ip != nil && ip.TransportProtocol() == header.UDPProtocolNumber {
				inFlight--
			}
		}
	}
}

// guestStack is a gVisor stack standing in for the guest on the other
// end of a backend's frames (its address 10.0.2.15, gateway 10.0.2.2),
// for streams through the user-mode network without a VM.
func guestStack(tb testing.TB, be backend, mtu int) *stack.Stack {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	link := channel.New(1024, uint32(mtu+ethHeaderSize), guestLink)
	if e := s.CreateNIC(1, ethernet.New(link)); e != nil {
		tb.Fatal(e)
	}
	s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: guestIP, PrefixLen: 24}}, stack.AddressProperties{})
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: gatewayIP, NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // guest -> network
		buf := make([]byte, mtu+maxFrameOverhead)
		for {
			pkt := link.ReadContext(ctx)
			if pkt == nil {
				return
			}
			n := 0
			for _, v := range pkt.AsSlices() {
				n += copy(buf[n:], v)
			}
			pkt.DecRef()
			be.Send(buf[:n])
		}
	}()
	go func() { // network -> guest
		buf := make([]byte, be.MTU()+maxFrameOverhead)
		for {
			n, err := be.Recv(buf)
			if err != nil {
				return
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:n])})
			link.InjectInbound(0, pkt)
			pkt.DecRef()
		}
	}()
	tb.Cleanup(func() {
		cancel()
		be.Close()
		s.Close()
	})
	return s
}

// A TCP stream each way between a "guest" stack and a host socket
// through the NAT (10.0.2.2 = the host's 127.0.0.1), every byte checked.
func TestUserNetTCPStream(t *testing.T) {
	be, err := New(testMAC, nil)
	if err != nil {
		t.Fatal(err)
	}
	gs := guestStack(t, be, UserNetMTU)
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	go func() {
		c, err := host.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// Echo: what the guest sends comes back.
		io.Copy(c, c)
	}()
	port := uint16(host.Addr().(*net.TCPAddr).Port)
	c, err := gonet.DialTCP(gs, tcpip.FullAddress{NIC: 1, Addr: gatewayIP, Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo of %d bytes through the NAT: %d back, equal %v, %v", len(data), len(got), bytes.Equal(got, data), err)
	}
}

// BenchmarkUserNetTCP: bulk TCP from a "guest" stack to a host socket and
// back through the user-mode network's NAT (frames through the backend,
// no VM), in process and through vmm-net's socket pair, against the same
// transfer over the host's loopback.
func BenchmarkUserNetTCP(b *testing.B) {
	const chunk = 1 << 20
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// The first byte says which way: 'r' the host reads, 'w' it
				// writes until the peer closes.
				var op [1]byte
				if _, err := io.ReadFull(c, op[:]); err != nil {
					return
				}
				if op[0] == 'r' {
					io.Copy(io.Discard, c)
					return
				}
				buf := make([]byte, chunk)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	port := host.Addr().(*net.TCPAddr).Port
	run := func(b *testing.B, dial func() net.Conn, op byte) {
		c := dial()
		defer c.Close()
		c.Write([]byte{op})
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var err error
			if op == 'r' {
				_, err = c.Write(buf)
			} else {
				_, err = io.ReadFull(c, buf)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	native := func() net.Conn {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	guest := func(b *testing.B) func() net.Conn {
		return func() net.Conn {
			be, err := New(testMAC, nil)
			if err != nil {
				b.Fatal(err)
			}
			gs := guestStack(b, be, UserNetMTU)
			c, err := gonet.DialTCP(gs, tcpip.FullAddress{NIC: 1, Addr: gatewayIP, Port: uint16(port)}, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}
	}
	// Through vmm-net, as vmm run --net user does: the same stacks with
	// the socket pair between them.
	viaHelper := func(b *testing.B) func() net.Conn {
		return func() net.Conn {
			dir := b.TempDir()
			if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, vmm.NetHelper), "../../tools/vmmnet").CombinedOutput(); err != nil {
				b.Fatalf("building vmm-net: %v\n%s", err, out)
			}
			b.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
			be, err := vmm.StartUserNet(testMAC, nil)
			if err != nil {
				b.Fatal(err)
			}
			gs := guestStack(b, be, UserNetMTU)
			c, err := gonet.DialTCP(gs, tcpip.FullAddress{NIC: 1, Addr: gatewayIP, Port: uint16(port)}, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}
	}
	b.Run("guest-to-host", func(b *testing.B) { run(b, guest(b), 'r') })
	b.Run("host-to-guest", func(b *testing.B) { run(b, guest(b), 'w') })
	b.Run("vmm-net-guest-to-host", func(b *testing.B) { run(b, viaHelper(b), 'r') })
	b.Run("vmm-net-host-to-guest", func(b *testing.B) { run(b, viaHelper(b), 'w') })
	b.Run("native-to-host", func(b *testing.B) { run(b, native, 'r') })
	b.Run("native-from-host", func(b *testing.B) { run(b, native, 'w') })
}
