package vmm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	gvchecksum "gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The virtio-net device against a fake driver over guest memory, as
// virtio_test.go does for the block device, with a backend that records
// what the guest sent and hands it frames to receive. No KVM.

// Layout of the fake guest's memory: the receive queue's areas, the
// transmit queue's, then buffers.
const (
	ngRxDesc  = 0x1000
	ngRxAvail = 0x2000
	ngRxUsed  = 0x3000
	ngTxDesc  = 0x5000
	ngTxAvail = 0x6000
	ngTxUsed  = 0x7000
	ngBuf     = 0x10000
	ngQSize   = 16
)

// fakeNet is a NetBackend in memory.
type fakeNet struct {
	mu       sync.Mutex
	sent     [][]byte
	in       chan []byte
	closed   chan struct{}
	once     sync.Once
	verified bool
	mtu      int
}

func newFakeNet() *fakeNet {
	return &fakeNet{in: make(chan []byte, 64), closed: make(chan struct{}), mtu: netDefaultMTU, verified: true}
}

func (f *fakeNet) Send(frame []byte) error {
	f.mu.Lock()
	f.sent = append(f.sent, bytes.Clone(frame))
	f.mu.Unlock()
	return nil
}

func (f *fakeNet) Recv(buf []byte) (int, error) {
	select {
	case b := <-f.in:
		return copy(buf, b), nil
	case <-f.closed:
		return 0, errNetClosed
	}
}

func (f *fakeNet) MTU() int       { return f.mtu }
func (f *fakeNet) Verified() bool { return f.verified }
func (f *fakeNet) Close() error   { f.once.Do(func() { close(f.closed) }); return nil }

func (f *fakeNet) frames() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// ngQueue is the driver's view of one queue.
type ngQueue struct {
	desc, avail, used uint64
	nextAvail         uint16
	nextUsed          uint16
	nextDesc          uint16
}

type netGuest struct {
	t    *testing.T
	mem  *GuestMemory
	be   *fakeNet
	dev  *netDevice
	tr   *virtioMMIO
	irqs int
	q    [2]ngQueue
}

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func newNetGuest(t testing.TB) *netGuest {
	g := &netGuest{mem: &GuestMemory{mem: make([]byte, tgMem)}, be: newFakeNet()}
	if tt, ok := t.(*testing.T); ok {
		g.t = tt
	}
	d, err := newNetDevice(g.be, testMAC)
	if err != nil {
		t.Fatal(err)
	}
	g.dev = d
	g.tr = newVirtioMMIO(g.mem, d, func() { g.irqs++ })
	d.t = g.tr
	// Without goroutines: a transmit doorbell serves the queue on the
	// caller; a receive doorbell has nothing to do (frames are pushed by
	// the test through receive).
	g.tr.kickQueue = func(q int) {
		if q == netTxQueue {
			g.tr.processQueue(netTxQueue, d.transmit)
		}
	}
	g.q[0] = ngQueue{desc: ngRxDesc, avail: ngRxAvail, used: ngRxUsed}
	g.q[1] = ngQueue{desc: ngTxDesc, avail: ngTxAvail, used: ngTxUsed}
	return g
}

func (g *netGuest) r32(off uint64) uint32 {
	var b [4]byte
	g.tr.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (g *netGuest) w32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	g.tr.Write(off, b[:])
}

func (g *netGuest) start(want uint64) bool {
	g.w32(vioStatus, 0)
	g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver)
	g.w32(vioDriverFeatSel, 0)
	g.w32(vioDriverFeatures, uint32(want))
	g.w32(vioDriverFeatSel, 1)
	g.w32(vioDriverFeatures, uint32(want>>32))
	g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK)
	if g.r32(vioStatus)&vioStatusFeaturesOK == 0 {
		return false
	}
	clear(g.mem.mem[ngRxDesc:ngBuf])
	for i := range g.q {
		q := &g.q[i]
		g.w32(vioQueueSel, uint32(i))
		g.w32(vioQueueNum, ngQSize)
		g.w32(vioQueueDescLow, uint32(q.desc))
		g.w32(vioQueueDriverLow, uint32(q.avail))
		g.w32(vioQueueDeviceLow, uint32(q.used))
		g.w32(vioQueueReady, 1)
		q.nextAvail, q.nextUsed, q.nextDesc = 0, 0, 0
	}
	g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK|vioStatusDriverOK)
	return true
}

func (g *netGuest) put(pa uint64, v any) {
	b, _ := binary.Append(nil, binary.LittleEndian, v)
	copy(g.mem.mem[pa:], b)
}

func (g *netGuest) desc(qi int, i uint16, addr uint64, l uint32, flags, next uint16) {
	g.put(g.q[qi].desc+16*uint64(i), struct {
		A uint64
		L uint32
		F uint16
		N uint16
	}{addr, l, flags, next})
}

// submit chains ds on queue qi and makes the chain available.
func (g *netGuest) submit(qi int, ds ...tdesc) uint16 {
	q := &g.q[qi]
	head := q.nextDesc
	for k, d := range ds {
		i := (head + uint16(k)) % ngQSize
		flags, next := uint16(0), (i+1)%ngQSize
		if d.write {
			flags |= vringDescWrite
		}
		if k < len(ds)-1 {
			flags |= vringDescNext
		}
		g.desc(qi, i, d.addr, d.len, flags, next)
	}
	q.nextDesc = (head + uint16(len(ds))) % ngQSize
	g.putAvail(qi, head)
	return head
}

// putAvail publishes head as a driver does: the entry, then the index
// with a store the device's load of it is ordered after (an atomic store
// of the aligned word: flags and index).
func (g *netGuest) putAvail(qi int, head uint16) {
	q := &g.q[qi]
	g.put(q.avail+4+2*uint64(q.nextAvail%ngQSize), head)
	q.nextAvail++
	w := (*uint32)(unsafe.Pointer(&g.mem.mem[q.avail]))
	atomic.StoreUint32(w, uint32(q.nextAvail)<<16|atomic.LoadUint32(w)&0xffff)
}

// usedIdx loads the used ring's index as a driver does.
func (g *netGuest) usedIdx(qi int) uint16 {
	return uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&g.mem.mem[g.q[qi].used]))) >> 16)
}

// usedEntries returns the new used entries of queue qi.
func (g *netGuest) usedEntries(qi int) [][2]uint32 {
	q := &g.q[qi]
	var out [][2]uint32
	for ; q.nextUsed != g.usedIdx(qi); q.nextUsed++ {
		e := q.used + 4 + 8*uint64(q.nextUsed%ngQSize)
		out = append(out, [2]uint32{binary.LittleEndian.Uint32(g.mem.mem[e:]), binary.LittleEndian.Uint32(g.mem.mem[e+4:])})
	}
	return out
}

// transmit puts hdr+frame at buf (split in two descriptors) and rings
// the transmit doorbell.
func (g *netGuest) transmit(buf uint64, hdr [netHdrSize]byte, frame []byte) [][2]uint32 {
	copy(g.mem.mem[buf:], hdr[:])
	copy(g.mem.mem[buf+netHdrSize:], frame)
	g.submit(netTxQueue, tdesc{buf, netHdrSize, false}, tdesc{buf + netHdrSize, uint32(len(frame)), false})
	g.w32(vioQueueNotify, netTxQueue)
	return g.usedEntries(netTxQueue)
}

// postRx posts n receive buffers of size bytes from buf.
func (g *netGuest) postRx(buf uint64, n int, size uint32) {
	for i := range n {
		g.submit(netRxQueue, tdesc{buf + uint64(i)*uint64(size), size, true})
	}
}

const ngFeatures = vioFVersion1 | netFMAC | netFCsum | netFGuestCsum | netFStatus | netFMTU

// udpFrame builds an Ethernet/IPv4/UDP frame with payload, its UDP
// checksum left as the pseudo-header's sum (what a driver leaves for
// NEEDS_CSUM), and the offsets of the checksum.
func udpFrame(payload []byte) (frame []byte, start, off uint16) {
	frame = make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	eth := header.Ethernet(frame)
	eth.Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(testMAC), DstAddr: "\x52\x55\x0a\x00\x02\x02", Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 2, 15}), tcpip.AddrFrom4([4]byte{10, 0, 2, 2})
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(frame) - header.EthernetMinimumSize), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	udp := header.UDP(ip.Payload())
	udp.Encode(&header.UDPFields{SrcPort: 5000, DstPort: 7, Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(udp.Payload(), payload)
	udp.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(udp))))
	return frame, header.EthernetMinimumSize + header.IPv4MinimumSize, 6
}

func TestVirtioNetRegisters(t *testing.T) {
	g := newNetGuest(t)
	if g.r32(vioDeviceID) != 1 {
		t.Fatalf("device id %d", g.r32(vioDeviceID))
	}
	g.w32(vioDeviceFeatSel, 0)
	if f := g.r32(vioDeviceFeatures); f != netFCsum|netFGuestCsum|netFMTU|netFMAC|netFMrgRxbuf|netFStatus|vioFEventIdx {
		t.Errorf("features %#x", f)
	}
	var cfg [12]byte
	for i := range cfg {
		g.tr.Read(vioConfig+uint64(i), cfg[i:i+1])
	}
	if !bytes.Equal(cfg[:6], testMAC) || binary.LittleEndian.Uint16(cfg[6:]) != netStatusLinkUp || binary.LittleEndian.Uint16(cfg[10:]) != netDefaultMTU {
		t.Errorf("config % x", cfg)
	}
	// Two queues; a third does not exist.
	for _, c := range []struct{ sel, max uint32 }{{0, maxQueueSize}, {1, maxQueueSize}, {2, 0}} {
		g.w32(vioQueueSel, c.sel)
		if m := g.r32(vioQueueNumMax); m != c.max {
			t.Errorf("queue %d: QueueNumMax %d, want %d", c.sel, m, c.max)
		}
	}
	if g.start(netFMAC) {
		t.Error("FEATURES_OK without VERSION_1")
	}
	if g.start(ngFeatures | 1<<28) {
		t.Error("FEATURES_OK with INDIRECT_DESC, not offered")
	}
	if !g.start(ngFeatures | netFMrgRxbuf) {
		t.Fatal("handshake")
	}
	for q := range 2 {
		g.w32(vioQueueSel, uint32(q))
		if g.r32(vioQueueReady) != 1 {
			t.Errorf("queue %d not ready", q)
		}
	}
	if _, err := newNetDevice(g.be, net.HardwareAddr{1, 0, 0, 0, 0, 0}); err == nil {
		t.Error("multicast MAC accepted")
	}
}

func TestVirtioNetTransmit(t *testing.T) {
	g := newNetGuest(t)
	if !g.start(ngFeatures) {
		t.Fatal("handshake")
	}
	frame, start, off := udpFrame([]byte("hello, host"))
	// Without NEEDS_CSUM the frame goes out as it is.
	used := g.transmit(ngBuf, [netHdrSize]byte{}, frame)
	if len(used) != 1 || len(g.be.frames()) != 1 || !bytes.Equal(g.be.frames()[0], frame) {
		t.Fatalf("used %v, sent %d frames", used, len(g.be.frames()))
	}
	if g.irqs != 1 || g.r32(vioInterruptStatus) != vioIntUsedBuffer {
		t.Fatalf("irqs %d status %#x", g.irqs, g.r32(vioInterruptStatus))
	}
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	// NEEDS_CSUM: the device completes the UDP checksum.
	var hdr [netHdrSize]byte
	hdr[0] = netHdrFNeedsCsum
	binary.LittleEndian.PutUint16(hdr[6:], start)
	binary.LittleEndian.PutUint16(hdr[8:], off)
	g.transmit(ngBuf+0x1000, hdr, frame)
	sent := g.be.frames()
	if len(sent) != 2 {
		t.Fatalf("%d frames sent", len(sent))
	}
	ip := header.IPv4(sent[1][header.EthernetMinimumSize:])
	udp := header.UDP(ip.Payload())
	if !udp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), gvchecksum.Checksum(udp.Payload(), 0)) {
		t.Errorf("UDP checksum %#x is not valid", udp.Checksum())
	}
	if g.dev.txCsum.Load() != 1 {
		t.Errorf("%d checksums completed, want 1", g.dev.txCsum.Load())
	}
	// Bad frames are dropped, the chains returned, the device not broken:
	// short of a header, shorter than Ethernet's, a checksum request past
	// the end, a GSO type.
	g.submit(netTxQueue, tdesc{ngBuf, 8, false})
	g.w32(vioQueueNotify, netTxQueue)
	g.transmit(ngBuf, [netHdrSize]byte{}, frame[:10])
	bad := hdr
	binary.LittleEndian.PutUint16(bad[8:], uint16(len(frame)))
	g.transmit(ngBuf, bad, frame)
	gso := [netHdrSize]byte{1: 1}
	g.transmit(ngBuf, gso, frame)
	if g.usedIdx(netTxQueue) != 6 {
		t.Errorf("used index %d after 6 chains", g.usedIdx(netTxQueue))
	}
	if len(g.be.frames()) != 2 || g.dev.txDropped.Load() != 4 {
		t.Errorf("sent %d, dropped %d", len(g.be.frames()), g.dev.txDropped.Load())
	}
	if err := g.tr.brokenReason(); err != nil {
		t.Fatal(err)
	}
	// A frame longer than the MTU allows is dropped too.
	big := make([]byte, netDefaultMTU+netMaxFrameOverhead+1)
	g.transmit(ngBuf, [netHdrSize]byte{}, big)
	if g.dev.txDropped.Load() != 5 {
		t.Errorf("oversized frame not dropped")
	}
}

func TestVirtioNetReceive(t *testing.T) {
	g := newNetGuest(t)
	if !g.start(ngFeatures) {
		t.Fatal("handshake")
	}
	frame, _, _ := udpFrame([]byte("hello, guest"))
	// Nothing posted: the device waits for buffers.
	if err := g.dev.receive(frame); err != errNoRxBuffers {
		t.Fatalf("receive without buffers: %v", err)
	}
	g.postRx(ngBuf, 2, 2048)
	if err := g.dev.receive(frame); err != nil {
		t.Fatal(err)
	}
	used := g.usedEntries(netRxQueue)
	if len(used) != 1 || used[0][0] != 0 || used[0][1] != uint32(netHdrSize+len(frame)) {
		t.Fatalf("used %v", used)
	}
	hdr := g.mem.mem[ngBuf : ngBuf+netHdrSize]
	if hdr[0] != netHdrFDataValid || binary.LittleEndian.Uint16(hdr[10:]) != 1 || !bytes.Equal(g.mem.mem[ngBuf+netHdrSize:][:len(frame)], frame) {
		t.Fatalf("header % x", hdr)
	}
	if g.irqs != 1 {
		t.Fatalf("irqs %d", g.irqs)
	}
	// Without MRG_RXBUF a frame that does not fit one buffer is dropped,
	// and the buffer stays posted for the next.
	big := make([]byte, 3000)
	if err := g.dev.receive(big); err != nil || g.dev.rxDropped.Load() != 1 {
		t.Fatalf("oversized frame: %v, dropped %d", err, g.dev.rxDropped.Load())
	}
	if err := g.dev.receive(frame); err != nil || len(g.usedEntries(netRxQueue)) != 1 {
		t.Fatal("the buffer was not kept")
	}
	// Not verified by the backend, or GUEST_CSUM not taken: no DATA_VALID.
	g.be.verified = false
	g.postRx(ngBuf+0x8000, 1, 2048)
	g.dev.receive(frame)
	if g.mem.mem[ngBuf+0x8000] != 0 {
		t.Error("DATA_VALID from a backend that does not verify")
	}
}

func TestVirtioNetMergeable(t *testing.T) {
	g := newNetGuest(t)
	if !g.start(ngFeatures | netFMrgRxbuf) {
		t.Fatal("handshake")
	}
	frame := make([]byte, 2500)
	for i := range frame {
		frame[i] = byte(i * 13)
	}
	g.postRx(ngBuf, 2, 1000)
	// Two buffers do not hold it: nothing is consumed.
	if err := g.dev.receive(frame); err != errNoRxBuffers || len(g.usedEntries(netRxQueue)) != 0 {
		t.Fatalf("receive into too few buffers: %v", err)
	}
	g.postRx(ngBuf+2000, 2, 1000)
	if err := g.dev.receive(frame); err != nil {
		t.Fatal(err)
	}
	used := g.usedEntries(netRxQueue)
	if len(used) != 3 || used[0][1] != 1000 || used[1][1] != 1000 || used[2][1] != netHdrSize+2500-2000 {
		t.Fatalf("used %v", used)
	}
	if n := binary.LittleEndian.Uint16(g.mem.mem[ngBuf+10:]); n != 3 {
		t.Errorf("num_buffers %d", n)
	}
	if !bytes.Equal(g.mem.mem[ngBuf+netHdrSize:ngBuf+netHdrSize+2500], frame) {
		t.Error("frame differs")
	}
	// A frame no set of posted buffers can hold (the whole ring posted)
	// is dropped, not waited for.
	g.start(ngFeatures | netFMrgRxbuf)
	g.postRx(ngBuf, ngQSize, 64)
	if err := g.dev.receive(frame); err != nil || g.dev.rxDropped.Load() != 1 {
		t.Fatalf("frame larger than the ring: %v, dropped %d", err, g.dev.rxDropped.Load())
	}
	// A header split across buffers still gets num_buffers.
	g.start(ngFeatures | netFMrgRxbuf)
	g.submit(netRxQueue, tdesc{ngBuf, 6, true}, tdesc{ngBuf + 0x100, 4000, true})
	if err := g.dev.receive(frame[:100]); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint16(g.mem.mem[ngBuf+0x100+4:]); n != 1 {
		t.Errorf("split header: num_buffers %d", n)
	}
}

// EVENT_IDX: the device interrupts only when the used index passes
// used_event, and when it runs out of work it sets avail_event to the
// available index, so the driver's next entry rings the doorbell.
func TestVirtioNetEventIdx(t *testing.T) {
	g := newNetGuest(t)
	if !g.start(ngFeatures | vioFEventIdx) {
		t.Fatal("handshake")
	}
	availEvent := func(qi int) uint16 {
		return binary.LittleEndian.Uint16(g.mem.mem[g.q[qi].used+4+8*ngQSize:])
	}
	setUsedEvent := func(qi int, v uint16) { g.put(g.q[qi].avail+4+2*ngQSize, v) }
	frame, _, _ := udpFrame([]byte("x"))
	// used_event 0: the first completion (used index 0 -> 1) interrupts.
	g.transmit(ngBuf, [netHdrSize]byte{}, frame)
	if g.irqs != 1 || availEvent(netTxQueue) != 1 {
		t.Fatalf("irqs %d, avail_event %d after one frame", g.irqs, availEvent(netTxQueue))
	}
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	// used_event 5: completions 2 to 5 do not interrupt, 6 does.
	setUsedEvent(netTxQueue, 5)
	for i := 2; i <= 6; i++ {
		g.transmit(ngBuf, [netHdrSize]byte{}, frame)
		if want := 1 + btoi(i == 6); g.irqs != want {
			t.Fatalf("after completion %d: irqs %d, want %d", i, g.irqs, want)
		}
		if availEvent(netTxQueue) != uint16(i) {
			t.Fatalf("avail_event %d after %d frames", availEvent(netTxQueue), i)
		}
	}
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	// Receive: waiting for buffers arms the doorbell at the available
	// index; a frame delivered interrupts per used_event too.
	if err := g.dev.receive(frame); err != errNoRxBuffers || availEvent(netRxQueue) != 0 {
		t.Fatalf("receive without buffers: %v, avail_event %d", err, availEvent(netRxQueue))
	}
	g.postRx(ngBuf, 2, 2048)
	setUsedEvent(netRxQueue, 1) // interrupt after the second frame
	before := g.irqs
	g.dev.receive(frame)
	if g.irqs != before {
		t.Error("interrupt before used_event")
	}
	g.dev.receive(frame)
	if g.irqs != before+1 {
		t.Error("no interrupt past used_event")
	}
	if err := g.dev.receive(frame); err != errNoRxBuffers || availEvent(netRxQueue) != 2 {
		t.Fatalf("receive with the ring used up: %v, avail_event %d", err, availEvent(netRxQueue))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Bad queues on either side break the device; a reset repairs it.
func TestVirtioNetBadQueues(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(g *netGuest)
		want string
	}{
		{"rx readable buffer", func(g *netGuest) {
			g.submit(netRxQueue, tdesc{ngBuf, 2048, false})
			g.dev.receive(make([]byte, 60))
		}, "device-readable buffer"},
		{"rx outside RAM", func(g *netGuest) {
			g.submit(netRxQueue, tdesc{tgMem - 100, 2048, true})
			g.dev.receive(make([]byte, 60))
		}, "outside guest memory"},
		{"rx head out of range", func(g *netGuest) {
			g.putAvail(netRxQueue, 99)
			g.dev.receive(make([]byte, 60))
		}, "outside the queue"},
		{"tx loop", func(g *netGuest) {
			g.desc(netTxQueue, 0, ngBuf, 12, vringDescNext, 1)
			g.desc(netTxQueue, 1, ngBuf, 60, vringDescNext, 0)
			g.putAvail(netTxQueue, 0)
			g.w32(vioQueueNotify, netTxQueue)
		}, "loops"},
		{"tx index ahead", func(g *netGuest) {
			g.put(ngTxAvail+2, uint16(ngQSize+3))
			g.w32(vioQueueNotify, netTxQueue)
		}, "ahead"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newNetGuest(t)
			if !g.start(ngFeatures) {
				t.Fatal("handshake")
			}
			c.set(g)
			err := g.tr.brokenReason()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if g.r32(vioStatus)&vioStatusNeedsReset == 0 || g.r32(vioInterruptStatus)&vioIntConfig == 0 {
				t.Fatalf("status %#x", g.r32(vioStatus))
			}
			if err := g.dev.receive(make([]byte, 60)); !errors.Is(err, errNeedsReset) {
				t.Fatalf("receive on a broken device: %v", err)
			}
			if !g.start(ngFeatures) {
				t.Fatal("handshake after reset")
			}
			frame, _, _ := udpFrame([]byte("x"))
			if used := g.transmit(ngBuf, [netHdrSize]byte{}, frame); len(used) != 1 {
				t.Fatal("transmit after reset")
			}
		})
	}
}

// The device's goroutines, woken by eventfd doorbells as KVM's ioeventfd
// would signal them: frames cross both ways, a receive waits for buffers
// posted later, and close ends both goroutines.
func TestVirtioNetGoroutines(t *testing.T) {
	g := newNetGuest(t)
	bells := [2]*doorbell{}
	for i := range bells {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		bells[i] = &doorbell{fd: fd}
	}
	irq := make(chan struct{}, 100)
	g.tr.raise = func() { irq <- struct{}{} }
	g.tr.kickQueue = func(q int) { bells[q].ring() }
	r := &netRunner{d: g.dev, rxBell: bells[0], txBell: bells[1]}
	r.start()
	if !g.start(ngFeatures) {
		t.Fatal("handshake")
	}
	frame, _, _ := udpFrame([]byte("ping"))
	for i := range 20 {
		g.be.in <- frame
		// The buffer comes after the frame: the goroutine waits for it.
		if i%2 == 0 {
			time.Sleep(time.Millisecond)
		}
		g.postRx(ngBuf+uint64(i%ngQSize)*2048, 1, 2048)
		g.w32(vioQueueNotify, netRxQueue)
		<-irq
		g.w32(vioInterruptACK, vioIntUsedBuffer)
		if used := g.usedEntries(netRxQueue); len(used) != 1 || used[0][1] != uint32(netHdrSize+len(frame)) {
			t.Fatalf("frame %d: used %v", i, used)
		}
		g.transmit(ngBuf+0x10000, [netHdrSize]byte{}, frame)
		<-irq
		g.w32(vioInterruptACK, vioIntUsedBuffer)
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	if n := len(g.be.frames()); n != 20 {
		t.Errorf("%d frames sent", n)
	}
}

func TestChecksum(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 8, 9, 100, 1501} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31 + 7)
		}
		if got, want := checksum(b, 0x1234), gvchecksum.Checksum(b, 0x1234); got != want {
			t.Errorf("%d bytes: %#x, want %#x", n, got, want)
		}
	}
}

// FuzzVirtioNet hands the device arbitrary rings on both queues and
// arbitrary frames to receive, with and without MRG_RXBUF and EVENT_IDX
// (logSize's top bit). The device must not panic, hang, or touch
// memory outside the guest's, and must either work or mark itself broken.
func FuzzVirtioNet(f *testing.F) {
	le := binary.LittleEndian
	tx := make([]byte, 32)
	le.PutUint64(tx[0:], ngBuf)
	le.PutUint32(tx[8:], netHdrSize)
	le.PutUint16(tx[12:], vringDescNext)
	le.PutUint16(tx[14:], 1)
	le.PutUint64(tx[16:], ngBuf+netHdrSize)
	le.PutUint32(tx[24:], 60)
	rx := make([]byte, 32)
	le.PutUint64(rx[0:], ngBuf+0x4000)
	le.PutUint32(rx[8:], 100)
	le.PutUint16(rx[12:], vringDescWrite|vringDescNext)
	le.PutUint16(rx[14:], 1)
	le.PutUint64(rx[16:], ngBuf+0x5000)
	le.PutUint32(rx[24:], 2000)
	le.PutUint16(rx[28:], vringDescWrite)
	avail := []byte{0, 0, 1, 0, 0, 0}
	f.Add(uint8(4), true, tx, avail, rx, avail, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3}, uint16(1400))
	f.Add(uint8(4), false, tx, avail, rx, []byte{0, 0, 9, 0, 1, 0}, []byte{1, 0, 0, 0, 0, 0, 200, 0, 8, 0}, uint16(70000%65536))
	loop := bytes.Clone(tx)
	le.PutUint16(loop[30:], 0)
	le.PutUint16(loop[28:], vringDescNext)
	f.Add(uint8(3), true, loop, avail, loop, avail, []byte{}, uint16(60))
	f.Add(uint8(0x84), true, tx, avail, rx, avail, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3}, uint16(1400)) // EVENT_IDX
	f.Fuzz(func(t *testing.T, logSize uint8, mergeable bool, txDescs, txAvail, rxDescs, rxAvail, data []byte, frameLen uint16) {
		g := newNetGuest(t)
		size := uint32(1) << (logSize % 9)
		feat := uint64(ngFeatures)
		if mergeable {
			feat |= netFMrgRxbuf
		}
		if logSize&0x80 != 0 {
			feat |= vioFEventIdx
		}
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver)
		g.w32(vioDriverFeatures, uint32(feat))
		g.w32(vioDriverFeatSel, 1)
		g.w32(vioDriverFeatures, uint32(feat>>32))
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK)
		for i := range g.q {
			q := &g.q[i]
			g.w32(vioQueueSel, uint32(i))
			g.w32(vioQueueNum, size)
			g.w32(vioQueueDescLow, uint32(q.desc))
			g.w32(vioQueueDriverLow, uint32(q.avail))
			g.w32(vioQueueDeviceLow, uint32(q.used))
			g.w32(vioQueueReady, 1)
		}
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK|vioStatusDriverOK)
		copy(g.mem.mem[ngTxDesc:ngTxAvail], txDescs)
		copy(g.mem.mem[ngTxAvail:ngTxUsed], txAvail)
		copy(g.mem.mem[ngRxDesc:ngRxAvail], rxDescs)
		copy(g.mem.mem[ngRxAvail:ngRxUsed], rxAvail)
		copy(g.mem.mem[ngBuf:], data)
		frame := make([]byte, int(frameLen)%(netDefaultMTU+netMaxFrameOverhead+1))
		copy(frame, data)
		for range 3 {
			g.w32(vioQueueNotify, netTxQueue)
			g.dev.receive(frame)
		}
		if g.tr.brokenReason() == nil {
			if tq := &g.tr.qs[netTxQueue]; tq.q.usedIdx != uint16(tq.served.Load()) {
				t.Fatalf("transmit: served %d, used index %d", tq.served.Load(), tq.q.usedIdx)
			}
			if rq := &g.tr.qs[netRxQueue]; rq.q.usedIdx != uint16(rq.served.Load()) {
				t.Fatalf("receive: served %d, used index %d", rq.served.Load(), rq.q.usedIdx)
			}
		}
	})
}
