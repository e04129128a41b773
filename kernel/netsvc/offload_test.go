package netsvc

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

var (
	guestMAC = tcpip.LinkAddress("\x52\x54\x00\x12\x34\x56")
	peerMAC  = tcpip.LinkAddress("\x52\x55\x0a\x00\x02\x02")
	guest4   = tcpip.AddrFrom4([4]byte{10, 0, 2, 15})
	peer4    = tcpip.AddrFrom4([4]byte{10, 0, 2, 2})
	guest6   = tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0xc0, 15: 0x15})
	peer6    = tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0xc0, 15: 0x02})
)

// offloadPair is the guest's stack on an offloadLink with the device's
// features, and a peer stack (no offloads: it checks every checksum)
// on the far side of a device played by the test: it completes the
// checksums NEEDS_CSUM asks for, as Amber's VMM does, and marks the
// peer's frames with rxFlags.
type offloadPair struct {
	guest, peer *stack.Stack
	link        *offloadLink
	peerCh      *channel.Endpoint
	hold        *txHold
}

func newOffloadPair(t testing.TB, features uint64, rxFlags byte) *offloadPair {
	gs, err := NewStack()
	if err != nil {
		t.Fatal(err)
	}
	gch := channel.New(256, 1514, guestMAC)
	p := &offloadPair{guest: gs, link: newOffloadLink(gch, features), hold: new(txHold)}
	if err := gs.CreateNIC(ethNIC, ethernet.New(p.link)); err != nil {
		t.Fatal(err)
	}
	ps := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	p.peer = ps
	p.peerCh = channel.New(256, 1514, peerMAC)
	if err := ps.CreateNIC(1, ethernet.New(p.peerCh)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		s   *stack.Stack
		nic tcpip.NICID
		a   tcpip.Address
		len int
	}{{gs, ethNIC, guest4, 24}, {gs, ethNIC, guest6, 64}, {ps, 1, peer4, 24}, {ps, 1, peer6, 64}} {
		proto := ipv4.ProtocolNumber
		if a.a.Len() == 16 {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{Address: a.a, PrefixLen: a.len}}
		if err := a.s.AddProtocolAddress(a.nic, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
		a.s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: a.nic})
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		gs.Close()
		ps.Close()
	})
	go func() { // guest -> device -> peer
		for {
			pkt := gch.ReadContext(ctx)
			if pkt == nil {
				return
			}
			f := make([]byte, hdrLen, hdrLen+1514)
			for _, s := range pkt.AsSlices() {
				f = append(f, s...)
			}
			pkt.DecRef()
			for _, f := range p.link.outgoing(p.hold, f) {
				if f[0]&hdrNeedsCsum != 0 {
					start := int(binary.LittleEndian.Uint16(f[6:]))
					off := int(binary.LittleEndian.Uint16(f[8:]))
					fr := f[hdrLen:]
					binary.BigEndian.PutUint16(fr[start+off:], ^checksum.Checksum(fr[start:], 0))
				}
				pk := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(bytes.Clone(f[hdrLen:]))})
				p.peerCh.InjectInbound(0, pk)
				pk.DecRef()
			}
		}
	}()
	go func() { // peer -> device -> guest
		for {
			pkt := p.peerCh.ReadContext(ctx)
			if pkt == nil {
				return
			}
			var f []byte
			for _, s := range pkt.AsSlices() {
				f = append(f, s...)
			}
			pkt.DecRef()
			p.link.deliver(rxFlags, f)
		}
	}()
	return p
}

// TestOffloadEndToEnd: the guest's TCP and UDP (a datagram in IP
// fragments too, over IPv4 and IPv6) through a device that completes
// the checksums it is asked to, to a peer that checks every checksum,
// and back with DATA_VALID: every byte arrives, and the peer saw no
// checksum error.
func TestOffloadEndToEnd(t *testing.T) {
	for _, c := range []struct {
		name     string
		features uint64
		rxFlags  byte
	}{{"no offload", 0, 0}, {"CSUM and GUEST_CSUM", featCsum | featGuestCsum, hdrDataValid}} {
		t.Run(c.name, func(t *testing.T) {
			p := newOffloadPair(t, c.features, c.rxFlags)
			ln, err := gonet.ListenTCP(p.peer, tcpip.FullAddress{NIC: 1, Addr: peer4, Port: 9}, ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			data := make([]byte, 1<<20)
			for i := range data {
				data[i] = byte(i*7 + i>>11)
			}
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c) // echo
			}()
			conn, err := gonet.DialTCP(p.guest, tcpip.FullAddress{NIC: ethNIC, Addr: peer4, Port: 9}, ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(time.Minute)) // bounds a failing test only
			go func() {
				conn.Write(data)
				conn.CloseWrite()
			}()
			got, err := io.ReadAll(conn)
			conn.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("TCP echo of %d bytes: %d back (equal %v), %v", len(data), len(got), bytes.Equal(got, data), err)
			}
			for _, a := range []struct {
				local, remote tcpip.Address
				proto         tcpip.NetworkProtocolNumber
			}{{guest4, peer4, ipv4.ProtocolNumber}, {guest6, peer6, ipv6.ProtocolNumber}} {
				srv, err := gonet.DialUDP(p.peer, &tcpip.FullAddress{NIC: 1, Addr: a.remote, Port: 53}, nil, a.proto)
				if err != nil {
					t.Fatal(err)
				}
				cl, err := gonet.DialUDP(p.guest, nil, &tcpip.FullAddress{NIC: ethNIC, Addr: a.remote, Port: 53}, a.proto)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 8000)
				for _, size := range []int{100, 1000, 4000, 6001} {
					dg := data[size : 2*size]
					if _, err := cl.Write(dg); err != nil {
						t.Fatal(err)
					}
					srv.SetReadDeadline(time.Now().Add(20 * time.Second)) // bounds a failing test only
					n, _, err := srv.ReadFrom(buf)
					if err != nil || !bytes.Equal(buf[:n], dg) {
						t.Fatalf("%v: UDP datagram of %d bytes: %d arrived, %v", a.proto, size, n, err)
					}
				}
				srv.Close()
				cl.Close()
			}
			st := p.peer.Stats()
			if n := st.TCP.ChecksumErrors.Value() + st.UDP.ChecksumErrors.Value() + st.IP.MalformedPacketsReceived.Value(); n != 0 {
				t.Errorf("the peer dropped %d packets for bad checksums", n)
			}
			off, frag := p.hold.Offloaded.Load(), p.hold.FragSums.Load()
			valid := p.link.RxValid.Load()
			if c.features == 0 {
				if off != 0 || frag != 0 || valid != 0 {
					t.Errorf("without offloads: %d frames sent with NEEDS_CSUM, %d fragment sums, %d frames taken as valid", off, frag, valid)
				}
			} else if off < 100 || frag != 4 || valid < 100 {
				// 4000 and 6001 bytes are fragmented, over IPv4 and IPv6.
				t.Errorf("with offloads: %d frames sent with NEEDS_CSUM, %d fragment sums (want 4), %d frames taken as valid", off, frag, valid)
			}
		})
	}
}

// TestOffloadBadChecksum: a TCP segment with a wrong checksum from the
// network is dropped unless the device marked it DATA_VALID (then the
// device's word stands), with GUEST_CSUM negotiated or not.
func TestOffloadBadChecksum(t *testing.T) {
	gs, err := NewStack()
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	ch := channel.New(16, 1514, guestMAC)
	l := newOffloadLink(ch, featCsum|featGuestCsum)
	if err := gs.CreateNIC(ethNIC, ethernet.New(l)); err != nil {
		t.Fatal(err)
	}
	gs.AddProtocolAddress(ethNIC, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: guest4, PrefixLen: 24}}, stack.AddressProperties{})
	gs.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: ethNIC})
	ln, err := gonet.ListenTCP(gs, tcpip.FullAddress{NIC: ethNIC, Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	syn := func(port uint16, bad bool) []byte {
		tcpHdr := header.TCP(make([]byte, header.TCPMinimumSize))
		tcpHdr.Encode(&header.TCPFields{SrcPort: port, DstPort: 80, SeqNum: 1000, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
		sum := header.PseudoHeaderChecksum(tcp.ProtocolNumber, peer4, guest4, header.TCPMinimumSize)
		tcpHdr.SetChecksum(^checksum.Checksum(tcpHdr, sum))
		if bad {
			tcpHdr.SetChecksum(tcpHdr.Checksum() ^ 0x0100)
		}
		ip := header.IPv4(make([]byte, header.IPv4MinimumSize))
		ip.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64, Protocol: uint8(tcp.ProtocolNumber), SrcAddr: peer4, DstAddr: guest4})
		ip.SetChecksum(^ip.CalculateChecksum())
		eth := header.Ethernet(make([]byte, header.EthernetMinimumSize))
		eth.Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: guestMAC, Type: ipv4.ProtocolNumber})
		return append(append(eth, ip...), tcpHdr...)
	}
	gs.AddStaticNeighbor(ethNIC, ipv4.ProtocolNumber, peer4, peerMAC)
	// The listener answers on its own goroutine: the ports it answers
	// come through answered, in the order of the SYNs (one listener).
	answered := make(chan uint16, 16)
	go func() {
		for {
			pkt := ch.ReadContext(context.Background())
			if pkt == nil {
				return
			}
			f := header.Ethernet(bytes.Clone(pkt.ToView().AsSlice()))
			pkt.DecRef()
			if f.Type() == ipv4.ProtocolNumber {
				ip := header.IPv4(f[header.EthernetMinimumSize:])
				if ip.TransportProtocol() == tcp.ProtocolNumber {
					answered <- header.TCP(ip.Payload()).DestinationPort()
				}
			}
		}
	}()
	defer ch.Close()
	errs := func() uint64 { return gs.Stats().TCP.ChecksumErrors.Value() }
	expect := func(port uint16) {
		t.Helper()
		select {
		case p := <-answered:
			if p != port {
				t.Errorf("answered port %d, want %d (a bad segment was taken)", p, port)
			}
		case <-time.After(20 * time.Second): // bounds a failing test only
			t.Fatalf("SYN from port %d not answered", port)
		}
	}
	// Bad, no DATA_VALID: dropped and counted (the check is synchronous).
	l.deliver(0, syn(1111, true))
	if errs() != 1 {
		t.Errorf("a bad checksum without DATA_VALID: %d checksum errors, want 1", errs())
	}
	// The same segment made good: answered (and 1111 was not).
	l.deliver(0, syn(1112, false))
	expect(1112)
	// Bad but DATA_VALID: the device's word stands.
	l.deliver(hdrDataValid, syn(1113, true))
	expect(1113)
	// After it, a bad one without the flag is dropped again (the
	// capability was raised only for that frame); without GUEST_CSUM
	// negotiated, DATA_VALID means nothing.
	l.deliver(0, syn(1114, true))
	l.rx = false
	l.deliver(hdrDataValid, syn(1115, true))
	l.deliver(0, syn(1116, false))
	expect(1116)
	if errs() != 3 {
		t.Errorf("%d checksum errors, want 3", errs())
	}
	if l.RxValid.Load() != 1 {
		t.Errorf("RxValid %d, want 1", l.RxValid.Load())
	}
}

// BenchmarkOffloadTCP: bulk TCP from the guest's stack to the peer and
// back (an echo), through the test's device, with the checksums left to
// the device or computed and checked by the guest's stack. The device
// here is goroutines of the same process (as the VMM's are threads of
// another), so the difference is the guest stack's checksum work only
// roughly: both sides share this machine's CPUs.
func BenchmarkOffloadTCP(b *testing.B) {
	for _, c := range []struct {
		name     string
		features uint64
		rxFlags  byte
	}{{"software", 0, 0}, {"offload", featCsum | featGuestCsum, hdrDataValid}} {
		b.Run(c.name, func(b *testing.B) {
			p := newOffloadPair(b, c.features, c.rxFlags)
			ln, err := gonet.ListenTCP(p.peer, tcpip.FullAddress{NIC: 1, Addr: peer4, Port: 9}, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c)
			}()
			conn, err := gonet.DialTCP(p.guest, tcpip.FullAddress{NIC: ethNIC, Addr: peer4, Port: 9}, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			const chunk = 1 << 20
			data := make([]byte, chunk)
			got := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				go conn.Write(data)
				if _, err := io.ReadFull(conn, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
