package virtio

import "sync/atomic"

// The network device (§5.1): queue 0 receives, queue 1 transmits, each
// frame preceded by a 12-byte virtio_net_hdr (the VERSION_1 layout, with
// num_buffers). The driver negotiates no mergeable receive buffers and no
// segmentation offload, so the device hands over whole frames of at most
// 1514 bytes (1518 with a VLAN tag), each in one receive buffer; every
// buffer is NetBufSize bytes, so a frame fits in one descriptor either
// way.
//
// Checksum offload is taken when offered (§5.1.6.2): with CSUM a frame
// sent may carry NEEDS_CSUM, the device completing the TCP or UDP
// checksum from csum_start (the driver put the pseudo-header's sum in the
// field at csum_start+csum_offset); with GUEST_CSUM a received frame may
// carry DATA_VALID (the device checked its checksums) or NEEDS_CSUM (its
// checksum is partial, from a trusted local sender). The header travels
// with the frame (RxHdr, SendHdr); what to do with it is the network
// service's (kernel/netsvc).
//
// The receive queue is kept full: a buffer taken by Recv goes back to
// the device at once (Release). Transmit buffers are reclaimed when a
// new one is wanted (TxBuf), so the transmit queue never interrupts.
//
// EVENT_IDX is taken when offered: the device then asks for a doorbell
// only when it has run out of buffers (receive) or of work (transmit),
// so a steady stream costs no doorbells; and the receive queue's
// interrupt is one-shot: after one, the device stays quiet while the
// driver drains the ring, until the reader finds it empty and re-arms it
// (ArmInterrupt). Without EVENT_IDX the interrupt handler turns the
// interrupt off with the ring's flag (DisarmInterrupt) and the reader
// turns it on the same way.

// Network device features.
const (
	NetFCsum      = 1 << 0
	NetFGuestCsum = 1 << 1
	NetFMTU       = 1 << 3
	NetFMAC       = 1 << 5
	NetFStatus    = 1 << 16
)

// virtio_net_hdr flags (§5.1.6).
const (
	NetHdrNeedsCsum = 1
	NetHdrDataValid = 2
)

// DeviceNet is the network device's ID (§5).
const DeviceNet = 1

const (
	// NetHdrLen is the header before every frame.
	NetHdrLen = 12
	// NetBufSize is one buffer: header and the largest frame.
	NetBufSize = 2048
	// NetMaxFrame is the largest frame sent: an MTU of 1500 and the
	// Ethernet header, without the FCS.
	NetMaxFrame = 1514
	// NetBufPages is the memory Init wants for buffers: MaxQueue
	// receive and MaxQueue transmit buffers, two to a page.
	NetBufPages = MaxQueue

	netRXQ = 0
	netTXQ = 1

	netCfgMAC = 0
)

// Net is one virtio network device.
type Net[R Regs] struct {
	T       Transport[R]
	RX, TX  Queue
	MAC     [6]byte
	HasMAC  bool   // the device gave an address (else the caller picks one)
	Dropped uint64 // received buffers the device filled impossibly
	BadTx   uint64 // frames SendHdr refused (a header out of bounds)
	bufs    [NetBufPages]uintptr
	rxBufOf [MaxQueue]uint16 // buffer index by descriptor head
	txBufOf [MaxQueue]uint16
	txFree  [MaxQueue]uint16 // transmit buffers not with the device
	nTxFree int
	cur     int // the buffer Recv handed out and Release takes back; -1: none
}

// Init brings up the network device behind t (already probed): rings
// holds four zeroed pages for the two queues' rings, bufs NetBufPages
// pages for the buffers. irq says whether the receive queue interrupts
// (true) or is polled. It returns why the device cannot be used, or "".
//
//go:nosplit
func (d *Net[R]) Init(t Transport[R], rings *[4]uintptr, bufs *[NetBufPages]uintptr, irq bool) string {
	d.T = t
	if t.DeviceID != DeviceNet {
		return "not a network device"
	}
	if why := d.T.Negotiate(NetFMAC | FeatureEventIdx | NetFCsum | NetFGuestCsum); why != "" {
		return why
	}
	d.HasMAC = d.T.Features&NetFMAC != 0
	if d.HasMAC {
		// The address is six bytes at offset 0; the transport reads the
		// configuration space by 32-bit words.
		lo, hi := d.T.Config32(netCfgMAC), d.T.Config32(netCfgMAC+4)
		for i := 0; i < 4; i++ {
			d.MAC[i] = byte(lo >> (8 * i))
		}
		d.MAC[4], d.MAC[5] = byte(hi), byte(hi>>8)
	}
	d.bufs = *bufs
	if why := d.T.SetupQueue(netRXQ, &d.RX, MaxQueue, rings[0], rings[1]); why != "" {
		d.T.Fail()
		return why
	}
	if why := d.T.SetupQueue(netTXQ, &d.TX, MaxQueue, rings[2], rings[3]); why != "" {
		d.T.Fail()
		return why
	}
	if d.T.Features&FeatureEventIdx != 0 {
		d.RX.UseEventIdx()
		d.TX.UseEventIdx()
	}
	d.RX.SetPolling(!irq)
	d.TX.SetPolling(true)
	d.cur = -1
	var seg [1]Seg
	for i := 0; i < int(d.RX.Size); i++ {
		seg[0] = Seg{Addr: uint64(d.buf(i)), Len: NetBufSize, DeviceWrites: true}
		head, ok := d.RX.Add(seg[:])
		if !ok {
			d.T.Fail()
			return "receive queue refused a buffer"
		}
		d.rxBufOf[head] = uint16(i)
	}
	d.nTxFree = int(d.TX.Size)
	for i := 0; i < d.nTxFree; i++ {
		d.txFree[i] = uint16(MaxQueue + i)
	}
	d.T.Ready()
	d.T.Notify(netRXQ)
	return ""
}

// buf is buffer i's address: receive buffers are 0 to MaxQueue-1,
// transmit buffers MaxQueue and up.
//
//go:nosplit
func (d *Net[R]) buf(i int) uintptr {
	return d.bufs[i/2] + uintptr(i%2)*NetBufSize
}

// RxReady reports whether the device returned a receive buffer not yet
// taken (possibly one Recv will drop).
//
//go:nosplit
func (d *Net[R]) RxReady() bool { return !d.RX.Broken && d.RX.Pending() }

// Gen changes whenever the device returns a buffer on either queue: the
// readiness counter for edge-triggered waiters.
//
//go:nosplit
func (d *Net[R]) Gen() uint32 {
	return uint32(d.RX.UsedIdx()) | uint32(d.TX.UsedIdx())<<16
}

// Recv takes the next received frame: its address and length. The
// buffer is the caller's until Release, which must come before the next
// Recv. Buffers the device filled with no more than a header or more than
// it was given are counted in Dropped and given back. ok is false when
// no frame waits (or the queue broke).
//
//go:nosplit
func (d *Net[R]) Recv() (addr uintptr, n int, ok bool) {
	if d.cur >= 0 {
		d.Release()
	}
	for {
		head, used, ok := d.RX.Next()
		if !ok {
			return 0, 0, false
		}
		i := int(d.rxBufOf[head])
		d.cur = i
		if used <= NetHdrLen || used > NetBufSize {
			d.Dropped++
			d.Release()
			continue
		}
		return d.buf(i) + NetHdrLen, int(used) - NetHdrLen, true
	}
}

// RxHdr is the virtio_net_hdr of the frame of the last Recv (until
// Release): flags, csum_start and csum_offset. Flags the negotiated
// features do not allow are cleared, and NEEDS_CSUM is cleared unless
// csum_start and csum_offset lie within the frame of n bytes: the caller
// then checks the frame's checksums itself.
//
//go:nosplit
func (d *Net[R]) RxHdr(n int) (flags uint8, start, off uint16) {
	if d.cur < 0 || d.T.Features&NetFGuestCsum == 0 {
		return 0, 0, 0
	}
	b := d.buf(d.cur)
	flags = *(*uint8)(ptr(b)) & (NetHdrNeedsCsum | NetHdrDataValid)
	start, off = *u16at(b + 6), *u16at(b + 8)
	if flags&NetHdrNeedsCsum != 0 && int(start)+int(off)+2 > n {
		flags &^= NetHdrNeedsCsum
	}
	return flags, start, off
}

// Release gives the buffer of the last Recv back to the device.
//
//go:nosplit
func (d *Net[R]) Release() {
	if d.cur < 0 {
		return
	}
	i := d.cur
	d.cur = -1
	var seg [1]Seg
	seg[0] = Seg{Addr: uint64(d.buf(i)), Len: NetBufSize, DeviceWrites: true}
	head, ok := d.RX.Add(seg[:])
	if !ok {
		return // broken; Recv reports nothing more
	}
	d.rxBufOf[head] = uint16(i)
	if d.RX.NeedNotify() {
		d.T.Notify(netRXQ)
	}
}

// TxBuf returns a transmit buffer for a frame of up to NetMaxFrame
// bytes, reclaiming what the device has sent; ok is false when every
// buffer is with the device (or the queue broke).
//
//go:nosplit
func (d *Net[R]) TxBuf() (addr uintptr, ok bool) {
	for {
		head, _, ok := d.TX.Next()
		if !ok {
			break
		}
		d.txFree[d.nTxFree] = d.txBufOf[head]
		d.nTxFree++
	}
	if d.nTxFree == 0 || d.TX.Broken {
		return 0, false
	}
	return d.buf(int(d.txFree[d.nTxFree-1])) + NetHdrLen, true
}

// CanSend reports whether TxBuf would return a buffer.
//
//go:nosplit
func (d *Net[R]) CanSend() bool {
	_, ok := d.TxBuf()
	return ok
}

// Send hands the frame of n bytes written into TxBuf's buffer to the
// device. It returns false if n is out of range or there is no buffer.
//
//go:nosplit
func (d *Net[R]) Send(n int) bool { return d.SendHdr(n, 0, 0, 0) }

// SendHdr is Send with the header's flags: NEEDS_CSUM (with CSUM
// negotiated) asks the device to complete the checksum at start+off from
// start to the end of the frame. A header the device could not honour
// (another flag, CSUM not negotiated, the field beyond the frame) is
// refused and counted in BadTx.
//
//go:nosplit
func (d *Net[R]) SendHdr(n int, flags uint8, start, off uint16) bool {
	if n <= 0 || n > NetMaxFrame || d.nTxFree == 0 {
		return false
	}
	if flags != 0 && (flags != NetHdrNeedsCsum || d.T.Features&NetFCsum == 0 || int(start)+int(off)+2 > n) {
		d.BadTx++
		return false
	}
	i := int(d.txFree[d.nTxFree-1])
	b := d.buf(i)
	// flags, gso_type (none), hdr_len, gso_size, csum_start, csum_offset,
	// num_buffers (0 on transmit).
	*u64at(b) = uint64(flags)
	*u16at(b + 6) = start
	*u32at(b + 8) = uint32(off)
	var seg [1]Seg
	seg[0] = Seg{Addr: uint64(b), Len: uint32(NetHdrLen + n)}
	head, ok := d.TX.Add(seg[:])
	if !ok {
		return false
	}
	d.nTxFree--
	d.txBufOf[head] = uint16(i)
	if d.TX.NeedNotify() {
		d.T.Notify(netTXQ)
	}
	return true
}

// UsedIdx is the device's used.idx.
//
//go:nosplit
func (q *Queue) UsedIdx() uint16 { return uint16(atomic.LoadUint32(u32at(q.Used)) >> 16) }

// NeedNotify reports whether the device wants a notification for the
// buffers added since the last call: under EVENT_IDX when the available
// index passed the avail_event it asked for (the device asks only when it
// has run out of work), else unless it set VIRTQ_USED_F_NO_NOTIFY. Add's
// index store is a locked instruction, so these loads are not hoisted
// above it.
//
//go:nosplit
func (q *Queue) NeedNotify() bool {
	old := q.kicked
	q.kicked = q.availIdx
	if q.eventIdx {
		return q.availIdx-*q.availEvent()-1 < q.availIdx-old
	}
	return atomic.LoadUint32(u32at(q.Used))&1 == 0
}
