package vmm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// The virtio network device (virtio spec v1.2 §5.1) on the MMIO
// transport: queue 0 receives (the driver posts device-writable buffers,
// the device fills them with frames from the backend), queue 1 transmits
// (the driver posts a header and a frame, the device hands the frame to
// the backend). Each queue has its own goroutine: transmit waits on its
// doorbell (an ioeventfd matching the value 1 on QueueNotify), receive on
// the backend and, when the driver has no buffer posted, on its own
// doorbell (value 0). Both interrupt through the transport's irqfd.
//
// Every buffer comes from the guest and is checked as the block device's
// are (virtqueue.go): a chain that breaks the queue's rules marks the
// device DEVICE_NEEDS_RESET. A frame that is merely bad (shorter than
// the header, longer than the MTU allows, a checksum request outside the
// frame, a GSO type that was not negotiated) is dropped and counted, as a
// NIC drops a bad frame; the chain goes back to the driver.
//
// Offloads, chosen for what they cost the VMM: CSUM (the guest may leave
// a TCP/UDP checksum to the device; the VMM computes it on the frame it
// already copies, which the user-mode backend needs since its stack does
// not verify checksums from the guest), GUEST_CSUM (frames from the
// user-mode network's own stack are marked DATA_VALID, so the guest need
// not verify them), MRG_RXBUF (a frame may span several receive buffers,
// so small buffers serve a large MTU), MTU (the backend's: 65520 on the
// user-mode network, in place of TSO: a large MTU gives large segments
// without the VMM segmenting anything), EVENT_IDX (the driver may ask
// for fewer interrupts, the device asks for doorbells only when it has
// run out of work). Not offered: TSO/UFO (the VMM would segment), the
// control queue, multiqueue.

// Net device features (§5.1.3).
const (
	netFCsum      = 1 << 0
	netFGuestCsum = 1 << 1
	netFMTU       = 1 << 3
	netFMAC       = 1 << 5
	netFMrgRxbuf  = 1 << 15
	netFStatus    = 1 << 16
)

// The virtio_net_hdr (§5.1.6), 12 bytes with VERSION_1.
const (
	netHdrSize          = 12
	netHdrFNeedsCsum    = 1
	netHdrFDataValid    = 2
	netHdrGSONone       = 0
	netStatusLinkUp     = 1
	netRxQueue          = 0
	netTxQueue          = 1
	ethHeaderSize       = 14
	netMaxMTU           = 65535 - ethHeaderSize // the config's mtu is 16 bits
	netDefaultMTU       = 1500
	netMaxFrameOverhead = ethHeaderSize + 4 // Ethernet header and a VLAN tag
)

// NetBackend carries Ethernet frames (without the virtio header) between
// the device and a network: a user-mode network in this process
// (NewUserNet) or a host tap device (OpenTap).
type NetBackend interface {
	// Send transmits one frame from the guest; the backend does not keep
	// frame after it returns. A backend that cannot take it drops it.
	Send(frame []byte) error
	// Recv waits for the next frame for the guest and copies it into buf
	// (at least MTU()+18 bytes); an error (after Close: always) ends the
	// device's receive goroutine.
	Recv(buf []byte) (int, error)
	// MTU is the largest IP packet the backend carries.
	MTU() int
	// Verified reports that the frames Recv returns carry correct
	// checksums (the guest may skip verifying them).
	Verified() bool
	Close() error
}

// Net is a VM's network device: its backend and MAC address.
type Net struct {
	Backend NetBackend
	MAC     net.HardwareAddr // nil: RandomMAC
	// Spec is how the backend was made (the user network and its
	// forwards, or the tap device): a snapshot records it and a restore
	// makes a new backend from it. nil: the VM's snapshots cannot be
	// restored with their network unless RestoreConfig.Net gives one.
	Spec *NetSpec
}

// RandomMAC returns a MAC address in QEMU's locally administered range
// 52:54:00:xx:xx:xx, random per VM so that VMs on one tap bridge differ.
func RandomMAC() net.HardwareAddr {
	m := net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 0}
	rand.Read(m[3:])
	return m
}

// netDevice is the device type behind a virtioMMIO transport.
type netDevice struct {
	t       *virtioMMIO
	backend NetBackend
	mtu     int
	cfg     [12]byte

	txBuf []byte // a frame being transmitted, gathered from its chain
	rxHdr [netHdrSize]byte

	// Counters for the control API's /metrics: frames each way, frames
	// dropped each way (a bad header or length, no driver, a backend
	// error), transmitted frames whose checksum the device completed
	// (NEEDS_CSUM), and receive waits for the driver to post buffers
	// (the ring was empty when a frame came).
	txFrames, rxFrames, txDropped, rxDropped, txCsum, rxWaits atomic.Uint64
}

func newNetDevice(backend NetBackend, mac net.HardwareAddr) (*netDevice, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("MAC address %v: want 6 bytes", mac)
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("MAC address %v is a multicast address", mac)
	}
	mtu := backend.MTU()
	if mtu < 68 || mtu > netMaxMTU {
		return nil, fmt.Errorf("backend MTU %d outside [68, %d]", mtu, netMaxMTU)
	}
	d := &netDevice{backend: backend, mtu: mtu}
	copy(d.cfg[0:6], mac)
	le := binary.LittleEndian
	le.PutUint16(d.cfg[6:], netStatusLinkUp)
	le.PutUint16(d.cfg[8:], 1) // max_virtqueue_pairs (MQ is not offered)
	le.PutUint16(d.cfg[10:], uint16(mtu))
	d.txBuf = make([]byte, 0, netHdrSize+mtu+netMaxFrameOverhead)
	return d, nil
}

func (d *netDevice) deviceID() uint32 { return 1 }
func (d *netDevice) numQueues() int   { return 2 }
func (d *netDevice) config() []byte   { return d.cfg[:] }

func (d *netDevice) features() uint64 {
	f := uint64(vioFVersion1 | vioFEventIdx | netFCsum | netFMAC | netFMrgRxbuf | netFStatus | netFMTU)
	if d.backend.Verified() {
		f |= netFGuestCsum
	}
	return f
}

// serve would serve queue 0, the receive queue, as a block device's: the
// transport never calls it for this device (its doorbells go to
// kickQueue), and a chain that got here is not the driver's fault.
func (d *netDevice) serve(c *chain) (uint32, error) {
	return 0, errors.New("virtio-net: the receive queue is not served on a doorbell")
}

// transmit sends the frame of one transmit chain. Device-writable
// buffers in it (there should be none) are ignored.
func (d *netDevice) transmit(c *chain) (uint32, error) {
	n := iovLen(c.readable)
	if n < netHdrSize || n > uint64(cap(d.txBuf)) {
		d.txDropped.Add(1)
		return 0, nil
	}
	buf := d.txBuf[:n]
	iovCopyOut(buf, c.readable)
	hdr, frame := buf[:netHdrSize], buf[netHdrSize:]
	if len(frame) < ethHeaderSize || hdr[1] != netHdrGSONone {
		d.txDropped.Add(1)
		return 0, nil
	}
	if hdr[0]&netHdrFNeedsCsum != 0 {
		le := binary.LittleEndian
		start, off := uint64(le.Uint16(hdr[6:])), uint64(le.Uint16(hdr[8:]))
		if start > uint64(len(frame)) || start+off+2 > uint64(len(frame)) {
			d.txDropped.Add(1)
			return 0, nil
		}
		// The driver has put the pseudo-header's sum in the field
		// (§5.1.6.2): the checksum covers the rest from start.
		// A result of 0 goes out as 0xffff, its one's-complement twin: for
		// UDP, 0 would mean no checksum (RFC 768).
		sum := ^checksum(frame[start:], 0)
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(frame[start+off:], sum)
		d.txCsum.Add(1)
	}
	if err := d.backend.Send(frame); err != nil {
		d.txDropped.Add(1)
		return 0, nil
	}
	d.txFrames.Add(1)
	return 0, nil
}

// checksum is the Internet checksum's one's-complement sum of b added to
// initial (RFC 1071), not complemented.
func checksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// errNoRxBuffers is receive's answer when the driver has not posted
// enough buffers for the frame yet: the caller waits for the doorbell.
var errNoRxBuffers = errors.New("no receive buffers")

// receive puts frame (without header) into the receive queue: one chain,
// or with MRG_RXBUF as many as it needs. It reports errNoRxBuffers when
// the posted buffers do not hold it yet (nothing is consumed then), and
// drops a frame no set of buffers the driver could post would hold. An
// error from the queue's rules breaks the device.
func (d *netDevice) receive(frame []byte) error {
	t := d.t
	vq := &t.qs[netRxQueue]
	vq.mu.Lock()
	defer vq.mu.Unlock()
	if t.needsReset.Load() {
		return errNeedsReset
	}
	if !t.live.Load() || !vq.ready {
		d.rxDropped.Add(1) // no driver: the frame is lost, as on a wire
		return nil
	}
	feat := t.negotiated()
	mergeable := feat&netFMrgRxbuf != 0
	hdr := d.rxHdr[:]
	clear(hdr)
	if feat&netFGuestCsum != 0 && d.backend.Verified() {
		hdr[0] = netHdrFDataValid
	}
	q := &vq.q
	start := q.lastAvail
	total := uint64(netHdrSize + len(frame))
	type used struct {
		head uint16
		n    uint32
	}
	var heads [maxQueueSize]used
	nb := 0
	var firstNumBuffers []byte // where num_buffers goes, in the first chain
	written := uint64(0)
	for written < total {
		head, ok, err := q.pop()
		if err == nil && ok {
			err = q.resolve(head, &vq.c)
			if err == nil && len(vq.c.readable) > 0 {
				err = queueErr("receive chain at %d has a device-readable buffer", head)
			}
		}
		if err != nil {
			t.needReset(err)
			return err
		}
		if !ok && q.armDoorbell() {
			continue // buffers came while the doorbell was armed
		}
		if !ok {
			q.lastAvail = start
			if avail, _ := q.load16(q.avail + 2); avail-start == q.size {
				// Every buffer is posted and the frame still does not
				// fit: it never will.
				d.rxDropped.Add(1)
				return nil
			}
			return errNoRxBuffers
		}
		room := iovLen(vq.c.writable)
		if !mergeable && room < total {
			// Without MRG_RXBUF one chain must hold the frame (§5.1.6.3.1):
			// the driver sized its buffers for a smaller MTU.
			q.lastAvail = start
			d.rxDropped.Add(1)
			return nil
		}
		// Copy the part of header+frame this chain holds.
		n := uint64(0)
		for _, b := range vq.c.writable {
			for len(b) > 0 && written < total {
				var src []byte
				if written < netHdrSize {
					src = hdr[written:]
					if firstNumBuffers == nil && written == 0 && len(b) >= netHdrSize {
						firstNumBuffers = b[10:12]
					}
				} else {
					src = frame[written-netHdrSize:]
				}
				c := copy(b, src)
				b = b[c:]
				written += uint64(c)
				n += uint64(c)
			}
		}
		heads[nb] = used{head, uint32(n)}
		nb++
		if nb == int(q.size) && written < total {
			q.lastAvail = start
			d.rxDropped.Add(1)
			return nil
		}
	}
	// num_buffers: set in the header as it lies in guest memory (the
	// header may be split across buffers: then write it piecewise).
	if firstNumBuffers != nil {
		binary.LittleEndian.PutUint16(firstNumBuffers, uint16(nb))
	} else {
		binary.LittleEndian.PutUint16(hdr[10:], uint16(nb))
		d.rewriteHeader(q, heads[0].head, hdr)
	}
	for _, u := range heads[:nb] {
		if err := q.push(u.head, u.n); err != nil {
			t.needReset(err)
			return err
		}
	}
	vq.served.Add(uint64(nb))
	d.rxFrames.Add(1)
	if q.needInterrupt(q.usedIdx - uint16(nb)) {
		t.interrupt(vioIntUsedBuffer)
	}
	return nil
}

// rewriteHeader copies hdr again into the first chain's buffers, for the
// rare driver that splits the 12-byte header across descriptors.
func (d *netDevice) rewriteHeader(q *virtqueue, head uint16, hdr []byte) {
	var c chain
	if q.resolve(head, &c) != nil {
		return
	}
	n := 0
	for _, b := range c.writable {
		if n == len(hdr) {
			break
		}
		n += copy(b, hdr[n:])
	}
}

// netRunner is the device's two goroutines.
type netRunner struct {
	d              *netDevice
	rxBell, txBell *doorbell
	stop           atomic.Bool
	wg             sync.WaitGroup
	closeOnce      sync.Once
}

func (r *netRunner) start() {
	r.wg.Add(2)
	go r.runTx()
	go r.runRx()
}

func (r *netRunner) runTx() {
	defer r.wg.Done()
	t := r.d.t
	for {
		if _, err := r.txBell.wait(); err != nil || r.stop.Load() {
			return
		}
		for !r.stop.Load() {
			if more, err := t.processQueue(netTxQueue, r.d.transmit); !more || err != nil {
				break
			}
		}
	}
}

func (r *netRunner) runRx() {
	defer r.wg.Done()
	buf := make([]byte, r.d.mtu+netMaxFrameOverhead)
	for {
		n, err := r.d.backend.Recv(buf)
		if err != nil || r.stop.Load() {
			return
		}
		for {
			err := r.d.receive(buf[:n])
			if err != errNoRxBuffers {
				break // delivered, dropped, or the device is broken (dropped)
			}
			r.d.rxWaits.Add(1)
			// Wait for the driver to post buffers. Its kick after posting
			// them (always, or with EVENT_IDX the one receive armed) is
			// counted by the eventfd even when it came before this wait.
			if _, err := r.rxBell.wait(); err != nil || r.stop.Load() {
				return
			}
		}
	}
}

func (r *netRunner) close() error {
	var err error
	r.closeOnce.Do(func() {
		r.stop.Store(true)
		err = r.d.backend.Close()
		r.rxBell.ring()
		r.txBell.ring()
		r.wg.Wait()
	})
	return err
}

// addNet builds the network device as transport i (after the disks): its
// page, a doorbell per queue on QueueNotify, the MSI, the goroutines, and
// the command-line entry that announces it.
func (vm *VM) addNet(i int, n Net) error {
	if i >= maxDisks {
		return fmt.Errorf("at most %d virtio devices", maxDisks)
	}
	mac := n.MAC
	if mac == nil {
		mac = RandomMAC()
	}
	d, err := newNetDevice(n.Backend, mac)
	if err != nil {
		return err
	}
	pa := uint64(boot.VirtioMMIOPA + i*boot.VirtioMMIOSize)
	rxBell, err := vm.newDoorbellMatch(pa+vioQueueNotify, 4, false, netRxQueue)
	if err != nil {
		return err
	}
	txBell, err := vm.newDoorbellMatch(pa+vioQueueNotify, 4, false, netTxQueue)
	if err != nil {
		return err
	}
	irq, err := vm.newInterrupt(uint8(boot.VirtioVector + i))
	if err != nil {
		return err
	}
	t := newVirtioMMIO(vm.mem, d, func() { irq.Trigger() })
	d.t = t
	t.kickQueue = func(q int) {
		if q == netRxQueue {
			rxBell.ring()
		} else {
			txBell.ring()
		}
	}
	r := &netRunner{d: d, rxBell: rxBell, txBell: txBell}
	r.start()
	vm.closers = append(vm.closers, r.close)
	if err := vm.mmioBus.Add("virtio-net", pa, boot.VirtioMMIOSize, t); err != nil {
		return err
	}
	vm.cfg.Cmdline = append(vm.cfg.Cmdline[:len(vm.cfg.Cmdline):len(vm.cfg.Cmdline)], fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", pa, boot.VirtioVector+i))
	return nil
}
