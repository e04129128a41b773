package virtio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// fakeNetQ is one queue of fakeNet, seen from the device's side.
type fakeNetQ struct {
	num, ready           uint32
	desc, driver, device uint64
	lastAvail, usedIdx   uint16
	notifies             int
}

// fakeNet is a virtio-mmio network device written from the spec: two
// queues, frames delivered into the receive queue's buffers on demand,
// transmitted frames collected.
type fakeNet struct {
	t          *testing.T
	features   uint64
	featSel    uint32
	drvSel     uint32
	driverFeat uint64
	status     uint32
	numMax     uint32
	sel        uint32
	q          [2]fakeNetQ
	mac        [6]byte
	sent       [][]byte
	sentHdr    [][]byte
	rxHdr      [NetHdrLen]byte // the header deliver writes (num_buffers aside)
	noNotify   bool            // set VIRTQ_USED_F_NO_NOTIFY on both used rings
	isr        uint32
}

func newFakeNet(t *testing.T) *fakeNet {
	return &fakeNet{t: t, features: FeatureVersion1 | NetFMAC | NetFStatus | 1<<15 /* MRG_RXBUF, not taken */, numMax: 256,
		mac: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}}
}

func (d *fakeNet) Read32(off uintptr) uint32 {
	switch {
	case off == RegMagic:
		return Magic
	case off == RegVersion:
		return 2
	case off == RegDeviceID:
		return DeviceNet
	case off == RegDeviceFeatures:
		return uint32(d.features >> (32 * d.featSel))
	case off == RegQueueNumMax:
		return d.numMax
	case off == RegQueueReady:
		return d.q[d.sel].ready
	case off == RegStatus:
		return d.status
	case off == RegInterruptStatus:
		return d.isr
	case off == RegConfigGeneration:
		return 0
	case off >= RegConfig && off < RegConfig+8:
		var cfg [12]byte
		copy(cfg[:], d.mac[:])
		return binary.LittleEndian.Uint32(cfg[off-RegConfig:])
	}
	d.t.Errorf("read of register %#x", off)
	return 0
}

func (d *fakeNet) Write32(off uintptr, v uint32) {
	q := &d.q[d.sel]
	switch off {
	case RegDeviceFeatSel:
		d.featSel = v & 1
	case RegDriverFeatSel:
		d.drvSel = v & 1
	case RegDriverFeatures:
		d.driverFeat = d.driverFeat&^(0xffffffff<<(32*d.drvSel)) | uint64(v)<<(32*d.drvSel)
	case RegStatus:
		if v == 0 {
			*d = fakeNet{t: d.t, features: d.features, numMax: d.numMax, mac: d.mac, noNotify: d.noNotify, rxHdr: d.rxHdr}
			return
		}
		if v&StatusFeaturesOK != 0 && d.driverFeat&^d.features != 0 {
			v &^= StatusFeaturesOK
		}
		d.status = v
	case RegQueueSel:
		if v > 1 {
			d.t.Errorf("queue %d selected", v)
		}
		d.sel = v & 1
	case RegQueueNum:
		q.num = v
	case RegQueueReady:
		q.ready = v
	case RegQueueDescLow:
		q.desc = q.desc&^0xffffffff | uint64(v)
	case RegQueueDescHigh:
		q.desc = q.desc&0xffffffff | uint64(v)<<32
	case RegQueueDriverLow:
		q.driver = q.driver&^0xffffffff | uint64(v)
	case RegQueueDriverHigh:
		q.driver = q.driver&0xffffffff | uint64(v)<<32
	case RegQueueDeviceLow:
		q.device = q.device&^0xffffffff | uint64(v)
	case RegQueueDeviceHigh:
		q.device = q.device&0xffffffff | uint64(v)<<32
	case RegQueueNotify:
		if v > 1 {
			d.t.Errorf("notify of queue %d", v)
		}
		d.q[v&1].notifies++
		if d.status&StatusDriverOK == 0 {
			d.t.Errorf("notify before DRIVER_OK")
		}
	case RegInterruptACK:
		d.isr &^= v
	default:
		d.t.Errorf("write of register %#x", off)
	}
	if d.noNotify {
		for i := range d.q {
			if d.q[i].device != 0 {
				binary.LittleEndian.PutUint16(view(d.q[i].device, 2), 1)
			}
		}
	}
}

// take returns the next available single-descriptor chain of queue i.
func (d *fakeNet) take(i int) (head uint16, desc fdesc, ok bool) {
	q := &d.q[i]
	if binary.LittleEndian.Uint16(view(q.driver+2, 2)) == q.lastAvail {
		return 0, fdesc{}, false
	}
	head = binary.LittleEndian.Uint16(view(q.driver+4+2*uint64(q.lastAvail%uint16(q.num)), 2))
	q.lastAvail++
	b := view(q.desc+16*uint64(head), 16)
	desc = fdesc{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint16(b[12:])}
	if desc.flags&descNext != 0 {
		d.t.Fatalf("queue %d: chain of more than one descriptor", i)
	}
	return head, desc, true
}

func (d *fakeNet) use(i int, id, n uint32) {
	q := &d.q[i]
	e := view(q.device+4+8*uint64(q.usedIdx%uint16(q.num)), 8)
	binary.LittleEndian.PutUint32(e, id)
	binary.LittleEndian.PutUint32(e[4:], n)
	q.usedIdx++
	binary.LittleEndian.PutUint16(view(q.device+2, 2), q.usedIdx)
	d.isr |= 1
}

// deliver puts frame into the next receive buffer; used overrides the
// length reported (0: the true one), id the head (-1: the true one).
func (d *fakeNet) deliver(frame []byte, used uint32, id int64) bool {
	head, desc, ok := d.take(0)
	if !ok {
		return false
	}
	if desc.flags&descWrite == 0 || desc.len < NetHdrLen+uint32(len(frame)) {
		d.t.Fatalf("receive buffer %+v", desc)
	}
	b := view(desc.addr, desc.len)
	copy(b, d.rxHdr[:])
	binary.LittleEndian.PutUint16(b[10:], 1) // num_buffers
	copy(b[NetHdrLen:], frame)
	if used == 0 {
		used = NetHdrLen + uint32(len(frame))
	}
	if id < 0 {
		id = int64(head)
	}
	d.use(0, uint32(id), used)
	return true
}

// transmit sends up to max frames from the transmit queue (all if max < 0).
func (d *fakeNet) transmit(max int) int {
	n := 0
	for max < 0 || n < max {
		head, desc, ok := d.take(1)
		if !ok {
			break
		}
		if desc.flags&descWrite != 0 || desc.len < NetHdrLen {
			d.t.Fatalf("transmit buffer %+v", desc)
		}
		b := view(desc.addr, desc.len)
		if d.features&NetFCsum == 0 && !bytes.Equal(b[:NetHdrLen], make([]byte, NetHdrLen)) {
			d.t.Errorf("transmit header %x, want zeros", b[:NetHdrLen])
		}
		d.sent = append(d.sent, bytes.Clone(b[NetHdrLen:]))
		d.sentHdr = append(d.sentHdr, bytes.Clone(b[:NetHdrLen]))
		d.use(1, uint32(head), 0)
		n++
	}
	return n
}

func newNet(t *testing.T, d *fakeNet) *Net[*fakeNet] {
	t.Helper()
	m := mem(t, 4+NetBufPages)
	var rings [4]uintptr
	var bufs [NetBufPages]uintptr
	for i := range rings {
		rings[i] = addr(m) + uintptr(i)*4096
	}
	for i := range bufs {
		bufs[i] = addr(m) + uintptr(4+i)*4096
	}
	n := new(Net[*fakeNet])
	tr := Transport[*fakeNet]{R: d}
	if why := tr.Probe(); why != "" {
		t.Fatal(why)
	}
	if why := n.Init(tr, &rings, &bufs, true); why != "" {
		t.Fatal(why)
	}
	return n
}

func frame(i, size int) []byte {
	b := make([]byte, size)
	for k := range b {
		b[k] = byte(i + k*7)
	}
	copy(b, fmt.Sprintf("frame %d", i))
	return b
}

func recv(t *testing.T, n *Net[*fakeNet]) []byte {
	t.Helper()
	a, k, ok := n.Recv()
	if !ok {
		t.Fatal("no frame")
	}
	b := bytes.Clone(view(uint64(a), uint32(k)))
	n.Release()
	return b
}

func TestNetInit(t *testing.T) {
	d := newFakeNet(t)
	n := newNet(t, d)
	if d.status != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK {
		t.Errorf("status %#x", d.status)
	}
	if d.driverFeat != FeatureVersion1|NetFMAC {
		t.Errorf("driver features %#x, want VERSION_1|MAC", d.driverFeat)
	}
	if !n.HasMAC || n.MAC != d.mac {
		t.Errorf("MAC %x (%v), want %x", n.MAC, n.HasMAC, d.mac)
	}
	if d.q[0].num != MaxQueue || d.q[1].num != MaxQueue {
		t.Errorf("queue sizes %d, %d", d.q[0].num, d.q[1].num)
	}
	if avail := binary.LittleEndian.Uint16(view(d.q[0].driver+2, 2)); avail != MaxQueue {
		t.Errorf("%d receive buffers posted, want %d", avail, MaxQueue)
	}
	if d.q[0].notifies != 1 {
		t.Errorf("%d receive notifies, want 1", d.q[0].notifies)
	}
	if n.RxReady() {
		t.Error("RxReady with nothing received")
	}
	if !n.CanSend() {
		t.Error("cannot send on a fresh device")
	}

	// No MAC offered: the caller picks one.
	d = newFakeNet(t)
	d.features &^= NetFMAC
	if n = newNet(t, d); n.HasMAC {
		t.Error("HasMAC without the feature")
	}
	// No VERSION_1: refused.
	d = newFakeNet(t)
	d.features &^= FeatureVersion1
	tr := Transport[*fakeNet]{R: d, DeviceID: DeviceNet}
	var rings [4]uintptr
	var bufs [NetBufPages]uintptr
	if why := new(Net[*fakeNet]).Init(tr, &rings, &bufs, false); why == "" {
		t.Error("a device without VERSION_1 accepted")
	}
}

func TestNetReceive(t *testing.T) {
	d := newFakeNet(t)
	n := newNet(t, d)
	// Through the 16-bit index wrap several times, with the ring full
	// and half-full.
	seq := 0
	for round := 0; round < 1200; round++ {
		batch := 1 + round%MaxQueue
		for k := 0; k < batch; k++ {
			if !d.deliver(frame(seq+k, 60+(seq+k)%1455), 0, -1) {
				t.Fatalf("round %d: receive ring empty after %d frames", round, k)
			}
		}
		if !n.RxReady() {
			t.Fatal("RxReady false with frames waiting")
		}
		for k := 0; k < batch; k++ {
			if got, want := recv(t, n), frame(seq+k, 60+(seq+k)%1455); !bytes.Equal(got, want) {
				t.Fatalf("frame %d: %d bytes %q..., want %d bytes %q...", seq+k, len(got), got[:12], len(want), want[:12])
			}
		}
		seq += batch
		if _, _, ok := n.Recv(); ok || n.RxReady() {
			t.Fatal("a frame more than delivered")
		}
	}
	if d.q[0].usedIdx != uint16(seq) || seq < 70000 {
		t.Fatalf("%d frames, used.idx %d", seq, d.q[0].usedIdx)
	}
	// A device that says it never wants a notification gets none.
	d.noNotify = true
	before := d.q[0].notifies
	d.Write32(RegInterruptACK, 0) // sets the flag
	d.deliver(frame(1, 100), 0, -1)
	recv(t, n)
	if d.q[0].notifies != before {
		t.Error("notified despite VIRTQ_USED_F_NO_NOTIFY")
	}
}

// TestNetBadReceive: lengths the device cannot have written are dropped
// and the buffer reused; a head not in flight breaks the queue, and
// nothing is returned from it afterwards.
func TestNetBadReceive(t *testing.T) {
	d := newFakeNet(t)
	n := newNet(t, d)
	for _, used := range []uint32{1, NetHdrLen, NetBufSize + 1, 1 << 31} {
		d.deliver(frame(0, 100), used, -1)
	}
	d.deliver(frame(7, 100), 0, -1)
	if got := recv(t, n); !bytes.Equal(got, frame(7, 100)) {
		t.Fatalf("got %q after bad frames", got[:8])
	}
	if n.Dropped != 4 {
		t.Errorf("Dropped %d, want 4", n.Dropped)
	}
	if avail := binary.LittleEndian.Uint16(view(d.q[0].driver+2, 2)); avail != MaxQueue+5 {
		t.Errorf("avail.idx %d: dropped buffers not reposted", avail)
	}
	// Frames longer than the largest Ethernet frame but within the buffer
	// are handed on: the stack judges them.
	d.deliver(frame(8, NetBufSize-NetHdrLen), 0, -1)
	if got := recv(t, n); len(got) != NetBufSize-NetHdrLen {
		t.Errorf("%d bytes, want %d", len(got), NetBufSize-NetHdrLen)
	}
	d.deliver(frame(9, 100), 0, 5000)
	if _, _, ok := n.Recv(); ok || !n.RX.Broken || n.RxReady() {
		t.Errorf("a head out of range: ok %v, Broken %v", ok, n.RX.Broken)
	}
}

func TestNetTransmit(t *testing.T) {
	d := newFakeNet(t)
	n := newNet(t, d)
	send := func(i, size int) bool {
		a, ok := n.TxBuf()
		if !ok {
			return false
		}
		copy(view(uint64(a), uint32(size)), frame(i, size))
		if !n.Send(size) {
			t.Fatalf("Send(%d) refused", size)
		}
		return true
	}
	// The device sends nothing: the ring fills, then TxBuf says so.
	for i := 0; i < MaxQueue; i++ {
		if !send(i, 60+i) {
			t.Fatalf("transmit buffer %d refused", i)
		}
	}
	if _, ok := n.TxBuf(); ok || n.CanSend() {
		t.Fatal("a transmit buffer beyond the ring")
	}
	if d.q[1].notifies != MaxQueue {
		t.Errorf("%d notifies for %d frames", d.q[1].notifies, MaxQueue)
	}
	d.transmit(3)
	for i := MaxQueue; i < MaxQueue+3; i++ {
		if !send(i, 1514) {
			t.Fatalf("transmit buffer refused after the device sent 3")
		}
	}
	// Through the index wrap, a frame at a time and in bursts.
	for i := MaxQueue + 3; i < 70000; {
		d.transmit(-1)
		for k := 0; k < 1+i%50; k++ {
			if !send(i, 14+i%1501) {
				t.Fatalf("frame %d refused", i)
			}
			i++
		}
	}
	d.transmit(-1)
	if len(d.sent) != 70000 {
		t.Fatalf("%d frames sent, want 70000", len(d.sent))
	}
	for i, b := range d.sent {
		size := 14 + i%1501
		switch {
		case i < MaxQueue:
			size = 60 + i
		case i < MaxQueue+3:
			size = 1514
		}
		if !bytes.Equal(b, frame(i, size)) {
			t.Fatalf("frame %d: %d bytes %q, want %d", i, len(b), b[:10], size)
		}
	}
	for _, size := range []int{0, -1, NetMaxFrame + 1} {
		if n.Send(size) {
			t.Errorf("Send(%d) accepted", size)
		}
	}
}

func TestNetInterruptAck(t *testing.T) {
	d := newFakeNet(t)
	n := newNet(t, d)
	d.deliver(frame(1, 64), 0, -1)
	if s := n.T.AckInterrupt(); s != 1 || d.isr != 0 {
		t.Errorf("AckInterrupt %d, isr after %d", s, d.isr)
	}
	// The receive queue interrupts when asked to, the transmit queue never.
	if f := binary.LittleEndian.Uint16(view(d.q[0].driver, 2)); f != 0 {
		t.Errorf("receive avail flags %d", f)
	}
	if f := binary.LittleEndian.Uint16(view(d.q[1].driver, 2)); f != AvailNoInterrupt {
		t.Errorf("transmit avail flags %d", f)
	}
}

// TestNetEventIdx: with EVENT_IDX offered the driver takes it, notifies
// only when the device's avail_event asks, keeps the transmit queue's
// used_event out of reach, and ArmInterrupt writes used_event and
// reports a frame that came before it. Without it, the ring's flag does
// the same.
func TestNetEventIdx(t *testing.T) {
	d := newFakeNet(t)
	d.features |= FeatureEventIdx
	n := newNet(t, d)
	if d.driverFeat != FeatureVersion1|NetFMAC|FeatureEventIdx {
		t.Fatalf("driver features %#x, want VERSION_1|MAC|EVENT_IDX", d.driverFeat)
	}
	le := binary.LittleEndian
	usedEvent := func(i int) uint16 { return le.Uint16(view(d.q[i].driver+4+2*uint64(d.q[i].num), 2)) }
	availEvent := func(i int, v uint16) { le.PutUint16(view(d.q[i].device+4+8*uint64(d.q[i].num), 2), v) }
	availIdx := func(i int) uint16 { return le.Uint16(view(d.q[i].driver+2, 2)) }
	if ue := usedEvent(0); ue != 0 {
		t.Errorf("receive used_event %d, want 0 (interrupt on the first frame)", ue)
	}
	// The device has buffers enough: it asks for a doorbell far ahead.
	availEvent(0, availIdx(0)+0x100)
	for i := 0; i < 10; i++ {
		d.deliver(frame(i, 100), 0, -1)
		recv(t, n)
	}
	if d.q[0].notifies != 1 {
		t.Errorf("%d receive notifies with avail_event out of reach, want 1 (Init's)", d.q[0].notifies)
	}
	// It ran out: it asks for the next one.
	availEvent(0, availIdx(0))
	d.deliver(frame(10, 100), 0, -1)
	recv(t, n)
	if d.q[0].notifies != 2 {
		t.Errorf("%d receive notifies after avail_event asked, want 2", d.q[0].notifies)
	}
	if n.RX.ArmInterrupt() {
		t.Error("ArmInterrupt reports a frame on an empty ring")
	}
	if ue := usedEvent(0); ue != 11 {
		t.Errorf("used_event %d after 11 frames taken, want 11", ue)
	}
	d.deliver(frame(11, 100), 0, -1)
	n.RX.DisarmInterrupt() // nothing to do under EVENT_IDX
	if !n.RX.ArmInterrupt() {
		t.Error("ArmInterrupt misses the frame that came before it")
	}
	recv(t, n)
	// Transmit: used_event stays half the index space ahead.
	availEvent(1, 0x7fff)
	for i := 0; i < 300; i++ {
		a, ok := n.TxBuf()
		if !ok {
			t.Fatal("no transmit buffer")
		}
		copy(view(uint64(a), 60), frame(i, 60))
		if !n.Send(60) {
			t.Fatal("Send failed")
		}
		d.transmit(-1)
	}
	n.TxBuf()
	if ue, want := usedEvent(1), n.TX.lastUsed+0x8000; ue != want {
		t.Errorf("transmit used_event %d, want %d", ue, want)
	}
	if d.q[1].notifies != 0 {
		t.Errorf("%d transmit notifies with avail_event out of reach, want 0", d.q[1].notifies)
	}

	// Without EVENT_IDX: the flag.
	d = newFakeNet(t)
	n = newNet(t, d)
	flags := func() uint16 { return le.Uint16(view(d.q[0].driver, 2)) }
	n.RX.DisarmInterrupt()
	if flags() != AvailNoInterrupt {
		t.Errorf("flags %d after DisarmInterrupt", flags())
	}
	if n.RX.ArmInterrupt() || flags() != 0 {
		t.Errorf("ArmInterrupt on an empty ring: flags %d", flags())
	}
}

// TestNetChecksumOffload: CSUM and GUEST_CSUM are taken when offered;
// a received frame's DATA_VALID and NEEDS_CSUM come through RxHdr (the
// latter only within the frame, neither unless GUEST_CSUM was
// negotiated); SendHdr puts NEEDS_CSUM with csum_start and csum_offset
// in the header, and refuses what the device could not honour.
func TestNetChecksumOffload(t *testing.T) {
	d := newFakeNet(t)
	d.features |= NetFCsum | NetFGuestCsum
	n := newNet(t, d)
	if d.driverFeat != FeatureVersion1|NetFMAC|NetFCsum|NetFGuestCsum || n.T.Offered != d.features {
		t.Fatalf("driver features %#x (offered %#x)", d.driverFeat, n.T.Offered)
	}
	rx := func(flags byte, start, off uint16, size int) (byte, uint16, uint16) {
		t.Helper()
		d.rxHdr = [NetHdrLen]byte{0: flags}
		binary.LittleEndian.PutUint16(d.rxHdr[6:], start)
		binary.LittleEndian.PutUint16(d.rxHdr[8:], off)
		d.deliver(frame(1, size), 0, -1)
		_, k, ok := n.Recv()
		if !ok || k != size {
			t.Fatalf("Recv: %d bytes, %v", k, ok)
		}
		f, s, o := n.RxHdr(k)
		n.Release()
		return f, s, o
	}
	if f, _, _ := rx(NetHdrDataValid, 0, 0, 100); f != NetHdrDataValid {
		t.Errorf("DATA_VALID: flags %#x", f)
	}
	if f, s, o := rx(NetHdrNeedsCsum, 34, 16, 100); f != NetHdrNeedsCsum || s != 34 || o != 16 {
		t.Errorf("NEEDS_CSUM 34+16: flags %#x start %d offset %d", f, s, o)
	}
	if f, _, _ := rx(NetHdrNeedsCsum, 90, 9, 100); f != 0 {
		t.Errorf("NEEDS_CSUM beyond the frame: flags %#x, want none", f)
	}
	if f, _, _ := rx(0x80|NetHdrDataValid, 0, 0, 100); f != NetHdrDataValid {
		t.Errorf("an unknown flag: flags %#x, want DATA_VALID only", f)
	}

	send := func(size int, flags byte, start, off uint16) bool {
		a, ok := n.TxBuf()
		if !ok {
			t.Fatal("no transmit buffer")
		}
		copy(view(uint64(a), uint32(size)), frame(2, size))
		return n.SendHdr(size, flags, start, off)
	}
	if !send(100, NetHdrNeedsCsum, 34, 16) {
		t.Fatal("SendHdr with NEEDS_CSUM refused")
	}
	for _, c := range []struct {
		flags      byte
		start, off uint16
	}{{NetHdrNeedsCsum, 90, 9}, {NetHdrDataValid, 0, 0}, {NetHdrNeedsCsum | 4, 34, 16}, {NetHdrNeedsCsum, 0xffff, 0xffff}} {
		if send(100, c.flags, c.start, c.off) {
			t.Errorf("SendHdr(%#x, %d, %d) accepted", c.flags, c.start, c.off)
		}
	}
	if !send(60, 0, 0, 0) || n.BadTx != 4 {
		t.Errorf("BadTx %d, want 4", n.BadTx)
	}
	d.transmit(-1)
	if len(d.sentHdr) != 2 {
		t.Fatalf("%d frames sent, want 2", len(d.sentHdr))
	}
	if want := []byte{NetHdrNeedsCsum, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0}; !bytes.Equal(d.sentHdr[0], want) {
		t.Errorf("header %x, want %x", d.sentHdr[0], want)
	}
	if !bytes.Equal(d.sentHdr[1], make([]byte, NetHdrLen)) || !bytes.Equal(d.sent[0], frame(2, 100)) {
		t.Errorf("second header %x, or the first frame changed", d.sentHdr[1])
	}

	// Not negotiated (not offered): flags from the device are ignored,
	// NEEDS_CSUM is refused.
	d = newFakeNet(t)
	n = newNet(t, d)
	if f, _, _ := rx(NetHdrDataValid, 0, 0, 100); f != 0 {
		t.Errorf("DATA_VALID without GUEST_CSUM: flags %#x", f)
	}
	if send(100, NetHdrNeedsCsum, 34, 16) {
		t.Error("NEEDS_CSUM sent without CSUM")
	}
}
