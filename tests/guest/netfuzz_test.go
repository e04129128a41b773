package guest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/tools/qemu"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestNetBadFrames: the network may send anything. The guest's NIC sits
// on QEMU's socket network backend (each UDP datagram on the host is one
// Ethernet frame), with the test as the rest of the network: it answers
// the guest's ARP requests, and between rounds of malformed frames
// (random bytes, truncated and corrupted ARP, IPv4, IPv6, UDP and TCP
// headers, lying lengths, stray fragments, oversized frames) checks that
// testdata/netfuzz still echoes a UDP datagram. About 40 s under TCG.
func TestNetBadFrames(t *testing.T) {
	needGuest(t)
	if err := qemu.Available(); err != nil {
		t.Skip(err)
	}
	host, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	qport := freeUDPPort(t)
	args := qemu.Args(qemu.Config{Image: image(t, "./testdata/netfuzz"), Memory: 256 << 20,
		Options: []string{"amber.argv0=netfuzz", "amber.ip=10.0.3.15/24"}, Network: true})
	for i, a := range args {
		switch a {
		case "user,id=n0":
			args[i] = fmt.Sprintf("socket,id=n0,udp=%v,localaddr=127.0.0.1:%d", host.LocalAddr(), qport)
		case "virtio-net-device,netdev=n0":
			args[i] += ",mac=52:54:00:12:34:56"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu.Binary, args...)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-done }()
	for !strings.Contains(out.String(), "netfuzz: ready") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the guest ended before it was ready: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("the guest did not start:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}

	n := &fuzzNet{t: t, c: host, guestAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: qport}, out: out}
	r := rand.New(rand.NewPCG(1, 2))
	n.probe(0)
	for round := 1; round <= 20; round++ {
		for i := 0; i < 100; i++ {
			n.send(badFrame(r, i))
		}
		n.probe(round)
	}
	n.send(n.udpFrame([]byte("quit")))
	err = <-done
	done <- err
	// isa-debug-exit: QEMU exits with (status<<1)|1, so 1 is the guest's 0.
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("QEMU: %v (guest exit status %d, want 0)\n%s", err, (code-1)/2, out.String())
	}
	if s := out.String(); !strings.Contains(s, "netfuzz: done") || strings.Contains(s, "panic") {
		t.Errorf("guest output:\n%s", s)
	}
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

var (
	fuzzGuestMAC = tcpip.LinkAddress([]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	fuzzHostMAC  = tcpip.LinkAddress([]byte{0x52, 0x54, 0, 0xaa, 0xbb, 0xcc})
	fuzzGuestIP  = tcpip.AddrFrom4([4]byte{10, 0, 3, 15})
	fuzzHostIP   = tcpip.AddrFrom4([4]byte{10, 0, 3, 2})
)

type fuzzNet struct {
	t         *testing.T
	c         *net.UDPConn
	guestAddr *net.UDPAddr
	out       *syncBuf
}

func (n *fuzzNet) send(f []byte) {
	if _, err := n.c.WriteToUDP(f, n.guestAddr); err != nil {
		n.t.Fatal(err)
	}
}

// udpFrame is a well-formed datagram from 10.0.3.2:9999 to the guest's
// port 7 (UDP checksum 0: none, allowed over IPv4).
func (n *fuzzNet) udpFrame(payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: fuzzHostMAC, DstAddr: fuzzGuestMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: fuzzHostIP, DstAddr: fuzzGuestIP})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 9999, DstPort: 7, Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(u[header.UDPMinimumSize:], payload)
	return f
}

// probe sends a datagram and waits for its echo, answering ARP on the way.
func (n *fuzzNet) probe(round int) {
	want := []byte(fmt.Sprintf("probe %d", round))
	n.send(n.udpFrame(want))
	deadline := time.Now().Add(60 * time.Second)
	resent := time.Now()
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		n.c.SetReadDeadline(time.Now().Add(time.Second))
		k, _, err := n.c.ReadFromUDP(buf)
		if err != nil {
			if time.Since(resent) > 5*time.Second {
				n.send(n.udpFrame(want)) // a probe can be lost like any datagram
				resent = time.Now()
			}
			continue
		}
		f := buf[:k]
		if len(f) < header.EthernetMinimumSize {
			continue
		}
		eth := header.Ethernet(f)
		p := f[header.EthernetMinimumSize:]
		switch eth.Type() {
		case header.ARPProtocolNumber:
			a := header.ARP(p)
			if a.IsValid() && a.Op() == header.ARPRequest && tcpip.AddrFromSlice(a.ProtocolAddressTarget()) == fuzzHostIP {
				n.send(arpReply(a))
			}
		case header.IPv4ProtocolNumber:
			ip := header.IPv4(p)
			if !ip.IsValid(len(p)) || ip.TransportProtocol() != header.UDPProtocolNumber {
				continue
			}
			u := header.UDP(ip.Payload())
			if len(u) >= header.UDPMinimumSize && u.SourcePort() == 7 && bytes.Equal(u.Payload(), want) {
				return
			}
		}
	}
	n.t.Fatalf("round %d: no echo within 60s\nguest:\n%s", round, n.out.String())
}

func arpReply(req header.ARP) []byte {
	f := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: fuzzHostMAC, DstAddr: tcpip.LinkAddress(req.HardwareAddressSender()), Type: header.ARPProtocolNumber})
	a := header.ARP(f[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPReply)
	copy(a.HardwareAddressSender(), fuzzHostMAC)
	copy(a.ProtocolAddressSender(), fuzzHostIP.AsSlice())
	copy(a.HardwareAddressTarget(), req.HardwareAddressSender())
	copy(a.ProtocolAddressTarget(), req.ProtocolAddressSender())
	return f
}

// badFrame is frame i of a round of malformed ones.
func badFrame(r *rand.Rand, i int) []byte {
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		return b
	}
	eth := func(typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
		f := make([]byte, header.EthernetMinimumSize, header.EthernetMinimumSize+len(payload))
		dst := fuzzGuestMAC
		if r.IntN(4) == 0 {
			dst = header.EthernetBroadcastAddress
		}
		header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: fuzzHostMAC, DstAddr: dst, Type: typ})
		return append(f, payload...)
	}
	// ipv4 is a header for proto with the given payload, then mutated.
	ipv4 := func(proto tcpip.TransportProtocolNumber, payload []byte, mutate bool) []byte {
		b := make([]byte, header.IPv4MinimumSize+len(payload))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto), SrcAddr: fuzzHostIP, DstAddr: fuzzGuestIP,
			Flags: uint8(r.IntN(2)) * header.IPv4FlagMoreFragments, FragmentOffset: uint16(r.IntN(3)) * 8, ID: uint16(r.Uint32())})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], payload)
		if mutate {
			for k := 0; k < 1+r.IntN(3); k++ {
				b[r.IntN(header.IPv4MinimumSize)] = byte(r.Uint32())
			}
			if r.IntN(2) == 0 {
				// Past the checksum check (over 20 bytes, whatever
				// the mutated header length says).
				ip.SetChecksum(0)
				ip.SetChecksum(^checksum.Checksum(b[:header.IPv4MinimumSize], 0))
			}
		}
		return b
	}
	switch i % 10 {
	case 0: // anything at all, including too short for Ethernet
		return randBytes(r.IntN(1600))
	case 1: // random IPv4
		return eth(header.IPv4ProtocolNumber, randBytes(r.IntN(1500)))
	case 2: // random ARP, of any length
		return eth(header.ARPProtocolNumber, randBytes(r.IntN(60)))
	case 3: // random IPv6
		return eth(header.IPv6ProtocolNumber, randBytes(r.IntN(1500)))
	case 4: // a corrupted IPv4 header over a UDP datagram to port 7
		u := make([]byte, header.UDPMinimumSize+4)
		header.UDP(u).Encode(&header.UDPFields{SrcPort: 9999, DstPort: 7, Length: uint16(len(u))})
		return eth(header.IPv4ProtocolNumber, ipv4(header.UDPProtocolNumber, u, true))
	case 5: // UDP with a lying length
		u := make([]byte, header.UDPMinimumSize+r.IntN(32))
		header.UDP(u).Encode(&header.UDPFields{SrcPort: 9999, DstPort: 7, Length: uint16(r.Uint32())})
		return eth(header.IPv4ProtocolNumber, ipv4(header.UDPProtocolNumber, u, false))
	case 6: // TCP to the guest with random header bytes and options
		return eth(header.IPv4ProtocolNumber, ipv4(header.TCPProtocolNumber, randBytes(r.IntN(80)), false))
	case 7: // ICMP with random contents, sometimes a corrupted header
		return eth(header.IPv4ProtocolNumber, ipv4(header.ICMPv4ProtocolNumber, randBytes(r.IntN(600)), r.IntN(2) == 0))
	case 8: // IPv6 with a plausible header and random extension headers
		b := make([]byte, header.IPv6MinimumSize+r.IntN(200))
		ip := header.IPv6(b)
		ip.Encode(&header.IPv6Fields{PayloadLength: uint16(r.IntN(400)), TransportProtocol: tcpip.TransportProtocolNumber(r.IntN(64)),
			HopLimit: 255, SrcAddr: header.LinkLocalAddr(fuzzHostMAC), DstAddr: header.LinkLocalAddr(fuzzGuestMAC)})
		copy(b[header.IPv6MinimumSize:], randBytes(len(b)-header.IPv6MinimumSize))
		return eth(header.IPv6ProtocolNumber, b)
	default: // larger than any Ethernet frame
		return eth(header.IPv4ProtocolNumber, randBytes(1500+r.IntN(3000)))
	}
}
