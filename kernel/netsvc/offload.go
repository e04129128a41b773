package netsvc

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Checksum offload between gVisor's stack and the virtio-net device
// (docs/kernel.md, "Network"). With CSUM negotiated the link tells
// gVisor it offloads transmit checksums (CapabilityTXChecksumOffload:
// TCP and UDP leave theirs out), and transmit puts the pseudo-header's
// sum in each TCP or UDP checksum field with NEEDS_CSUM, csum_start and
// csum_offset in the frame's header: the device computes the rest, over
// bytes it copies anyway. The exception is a UDP datagram gVisor split
// into IP fragments: no single frame holds what its checksum covers, so
// its fragments (which gVisor writes one after the other) are held until
// the last and the checksum is computed here.
//
// With GUEST_CSUM a received frame may carry DATA_VALID (the device
// checked its checksums: under Amber's VMM, the user-mode network's own
// stack made it) or NEEDS_CSUM (a partial checksum from a trusted local
// sender). gVisor's NIC takes a packet's RXChecksumValidated from its
// link's CapabilityRXChecksumOffload at delivery, so offloadLink raises
// that capability only while it delivers such a frame: delivery is
// synchronous on the receive goroutine, the only one that delivers on
// this NIC, and nothing else reads the RX capability. Every other frame
// is checked by gVisor as without offload (IPv4 header, TCP, UDP, ICMP,
// after reassembly), and dropped if wrong.

// offloadLink is the channel endpoint with the offloads the device took.
type offloadLink struct {
	*channel.Endpoint
	tx, rx bool        // CSUM, GUEST_CSUM negotiated
	valid  atomic.Bool // delivering a frame the device vouched for

	// Counters: frames delivered as checked by the device, frames
	// delivered for gVisor to check.
	RxValid, RxChecked atomic.Uint64
}

func newOffloadLink(ch *channel.Endpoint, features uint64) *offloadLink {
	return &offloadLink{Endpoint: ch, tx: features&featCsum != 0, rx: features&featGuestCsum != 0}
}

// Capabilities is the channel's with the offloads.
func (l *offloadLink) Capabilities() stack.LinkEndpointCapabilities {
	c := l.Endpoint.Capabilities()
	if l.tx {
		c |= stack.CapabilityTXChecksumOffload
	}
	if l.valid.Load() {
		c |= stack.CapabilityRXChecksumOffload
	}
	return c
}

// deliver hands a received frame to the stack; flags are its header's.
func (l *offloadLink) deliver(flags byte, frame []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	ok := l.rx && flags&(hdrDataValid|hdrNeedsCsum) != 0
	if ok {
		l.RxValid.Add(1)
		l.valid.Store(true)
	} else {
		l.RxChecked.Add(1)
	}
	l.InjectInbound(0, pkt)
	if ok {
		l.valid.Store(false)
	}
	pkt.DecRef()
}

// outgoing returns what to write to the device for frame (a header's
// room, then the frame gVisor wrote): with CSUM, add's work.
func (l *offloadLink) outgoing(h *txHold, frame []byte) [][]byte {
	clear(frame[:hdrLen])
	if !l.tx {
		return [][]byte{frame}
	}
	return h.add(frame)
}

// Offsets in a frame as written to the device: the virtio_net_hdr, then
// the Ethernet header.
const (
	ethOff = hdrLen
	ipOff  = hdrLen + header.EthernetMinimumSize
)

// txHold holds the fragments of a UDP datagram until its last.
type txHold struct {
	key    []byte // addresses and identification
	frames [][]byte

	// Frames sent with NEEDS_CSUM; UDP datagrams in fragments whose
	// checksum was computed here.
	Offloaded, FragSums atomic.Uint64
}

// udpChecksumOffset is where a UDP header keeps its checksum.
const udpChecksumOffset = 6

// maxHeld bounds a fragment chain held: gVisor's largest datagram in
// 1500-byte frames is 45 of them.
const maxHeld = 64

// add prepares frame (its header zeroed) for the device and returns what
// to send now: the frame with its checksum request, or a chain of
// fragments once complete, or nothing while a chain is incomplete.
func (h *txHold) add(frame []byte) [][]byte {
	key, last, frag := fragment(frame)
	if !frag {
		if setChecksumRequest(frame) {
			h.Offloaded.Add(1)
		}
		return [][]byte{frame}
	}
	var out [][]byte
	if h.key != nil && !bytes.Equal(h.key, key) {
		out = h.flush() // an unfinished chain goes out as it is
	}
	h.key = key
	h.frames = append(h.frames, bytes.Clone(frame))
	if last || len(h.frames) >= maxHeld {
		if last && udpFragmentSum(h.frames) {
			h.FragSums.Add(1)
		}
		out = append(out, h.flush()...)
	}
	return out
}

func (h *txHold) flush() [][]byte {
	f := h.frames
	h.key, h.frames = nil, nil
	return f
}

// setChecksumRequest fills the header of a TCP or UDP packet that is not
// a fragment: the pseudo-header's sum in its checksum field, NEEDS_CSUM
// from the transport header. Other frames go as they are (gVisor
// computes ICMP checksums itself).
func setChecksumRequest(f []byte) bool {
	l4, proto, src, dst, ok := transport(f)
	if !ok {
		return false
	}
	var off int
	switch proto {
	case header.TCPProtocolNumber:
		off = header.TCPChecksumOffset
		if len(f)-l4 < header.TCPMinimumSize {
			return false
		}
	case header.UDPProtocolNumber:
		off = udpChecksumOffset
		if len(f)-l4 < header.UDPMinimumSize {
			return false
		}
	default:
		return false
	}
	sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(f)-l4))
	binary.BigEndian.PutUint16(f[l4+off:], sum)
	f[0] = hdrNeedsCsum
	binary.LittleEndian.PutUint16(f[6:], uint16(l4-ethOff))
	binary.LittleEndian.PutUint16(f[8:], uint16(off))
	return true
}

// transport finds the transport header of an unfragmented IPv4 or IPv6
// packet (IPv6 without extension headers): its offset, protocol and the
// addresses. The frame is trimmed by nothing: gVisor's frames end with
// the packet.
func transport(f []byte) (l4 int, proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, ok bool) {
	if len(f) < ipOff {
		return
	}
	ip := f[ipOff:]
	switch binary.BigEndian.Uint16(f[ethOff+12:]) {
	case uint16(header.IPv4ProtocolNumber):
		h := header.IPv4(ip)
		if len(ip) < header.IPv4MinimumSize || int(h.HeaderLength()) < header.IPv4MinimumSize || int(h.TotalLength()) != len(ip) ||
			int(h.HeaderLength()) > len(ip) || h.More() || h.FragmentOffset() != 0 {
			return
		}
		return ipOff + int(h.HeaderLength()), h.TransportProtocol(), h.SourceAddress(), h.DestinationAddress(), true
	case uint16(header.IPv6ProtocolNumber):
		h := header.IPv6(ip)
		if len(ip) < header.IPv6MinimumSize || int(h.PayloadLength())+header.IPv6MinimumSize != len(ip) {
			return
		}
		return ipOff + header.IPv6MinimumSize, h.TransportProtocol(), h.SourceAddress(), h.DestinationAddress(), true
	}
	return
}

// fragment reports whether f is an IP fragment of a UDP datagram, the
// key of its datagram and whether it is the last.
func fragment(f []byte) (key []byte, last, ok bool) {
	if len(f) < ipOff {
		return
	}
	ip := f[ipOff:]
	switch binary.BigEndian.Uint16(f[ethOff+12:]) {
	case uint16(header.IPv4ProtocolNumber):
		h := header.IPv4(ip)
		if len(ip) < header.IPv4MinimumSize || (!h.More() && h.FragmentOffset() == 0) || h.TransportProtocol() != header.UDPProtocolNumber {
			return
		}
		key = append(append(append([]byte(nil), ip[12:20]...), ip[4:6]...), 4)
		return key, !h.More(), true
	case uint16(header.IPv6ProtocolNumber):
		h := header.IPv6(ip)
		if len(ip) < header.IPv6MinimumSize+header.IPv6FragmentHeaderSize || h.NextHeader() != uint8(header.IPv6FragmentHeader) {
			return
		}
		fh := header.IPv6Fragment(ip[header.IPv6MinimumSize:])
		if fh.NextHeader() != uint8(header.UDPProtocolNumber) {
			return
		}
		key = append(append(append([]byte(nil), ip[8:40]...), ip[header.IPv6MinimumSize+4:header.IPv6MinimumSize+8]...), 6)
		return key, !fh.More(), true
	}
	return
}

// udpFragmentSum computes the UDP checksum of a datagram from its
// fragments, in order (as gVisor writes them), into the first.
func udpFragmentSum(frames [][]byte) bool {
	var payloads [][]byte
	var src, dst tcpip.Address
	for i, f := range frames {
		ip := f[ipOff:]
		var p []byte
		var offset int
		if len(ip) > 0 && ip[0]>>4 == 4 {
			h := header.IPv4(ip)
			if int(h.TotalLength()) != len(ip) {
				return false
			}
			p, offset = ip[h.HeaderLength():], int(h.FragmentOffset())
			src, dst = h.SourceAddress(), h.DestinationAddress()
		} else {
			h := header.IPv6(ip)
			fh := header.IPv6Fragment(ip[header.IPv6MinimumSize:])
			if int(h.PayloadLength())+header.IPv6MinimumSize != len(ip) {
				return false
			}
			p, offset = ip[header.IPv6MinimumSize+header.IPv6FragmentHeaderSize:], int(fh.FragmentOffset())*8
			src, dst = h.SourceAddress(), h.DestinationAddress()
		}
		if i > 0 && offset != sumLen(payloads) || i == 0 && (offset != 0 || len(p) < header.UDPMinimumSize) {
			return false // not the chain gVisor writes: sent as it is
		}
		payloads = append(payloads, p)
	}
	udp := header.UDP(payloads[0])
	if int(udp.Length()) != sumLen(payloads) {
		return false
	}
	udp.SetChecksum(0)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, udp.Length())
	for _, p := range payloads {
		// Every fragment but the last carries a multiple of 8 bytes, so
		// each sum starts on an even byte.
		sum = checksum.Combine(sum, checksum.Checksum(p, 0))
	}
	c := ^sum
	if c == 0 {
		c = 0xffff
	}
	udp.SetChecksum(c)
	return true
}

func sumLen(ps [][]byte) int {
	n := 0
	for _, p := range ps {
		n += len(p)
	}
	return n
}
