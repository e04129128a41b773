package vmm

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
)

// The virtio-mmio transport, version 2 (virtio spec v1.2 §4.2): a page of
// 32-bit registers through which the driver negotiates features, sets up
// the queues and runs the status handshake, and a doorbell (QueueNotify)
// it writes when a queue has new buffers. The registers are served on the
// vCPU thread (MMIO exits, rare: setup, and the interrupt acknowledge);
// the doorbell is an ioeventfd, so a request costs the guest no exit, and
// the device's goroutine does the work and raises an MSI through an
// irqfd. The register offsets are the guest driver's
// (drivers/virtio/mmio.go), repeated here so the VMM does not import
// guest code.
const (
	vioMagic            = 0x000
	vioVersion          = 0x004
	vioDeviceID         = 0x008
	vioVendorID         = 0x00c
	vioDeviceFeatures   = 0x010
	vioDeviceFeatSel    = 0x014
	vioDriverFeatures   = 0x020
	vioDriverFeatSel    = 0x024
	vioQueueSel         = 0x030
	vioQueueNumMax      = 0x034
	vioQueueNum         = 0x038
	vioQueueReady       = 0x044
	vioQueueNotify      = 0x050
	vioInterruptStatus  = 0x060
	vioInterruptACK     = 0x064
	vioStatus           = 0x070
	vioQueueDescLow     = 0x080
	vioQueueDescHigh    = 0x084
	vioQueueDriverLow   = 0x090
	vioQueueDriverHigh  = 0x094
	vioQueueDeviceLow   = 0x0a0
	vioQueueDeviceHigh  = 0x0a4
	vioConfigGeneration = 0x0fc
	vioConfig           = 0x100

	vioMagicValue  = 0x74726976 // "virt"
	vioVendorAmber = 0x52424d41 // "AMBR"
	vioMMIOSize    = 0x1000

	// Device status bits (§2.1).
	vioStatusAcknowledge = 1
	vioStatusDriver      = 2
	vioStatusDriverOK    = 4
	vioStatusFeaturesOK  = 8
	vioStatusNeedsReset  = 64
	vioStatusFailed      = 128

	// InterruptStatus bits.
	vioIntUsedBuffer = 1
	vioIntConfig     = 2

	// vioFVersion1 is VERSION_1 (§6): a device that is not legacy.
	vioFVersion1 = 1 << 32
)

// virtioDevice is a device type behind the transport: what it offers and
// how it serves a queue.
type virtioDevice interface {
	deviceID() uint32
	features() uint64
	// config returns the device-specific configuration space.
	config() []byte
	// serve handles one available chain of queue 0 and returns the bytes
	// it wrote into the chain's device-writable buffers. An error breaks
	// the queue: the device then needs a reset.
	serve(c *chain) (uint32, error)
}

// multiQueue is a device with more than one queue (virtio-net: receive
// and transmit); a device without it has one.
type multiQueue interface {
	numQueues() int
}

// maxQueues bounds a transport's queues.
const maxQueues = 2

// vqueue is one queue of a transport with its own lock: a device's
// queues are served by different goroutines (virtio-net's receive and
// transmit) that must not wait for each other.
type vqueue struct {
	mu     sync.Mutex // the ring state, against the register writes
	q      virtqueue
	ready  bool
	c      chain // scratch, reused per request
	served atomic.Uint64
}

// virtioMMIO is one transport: its registers and its queues.
type virtioMMIO struct {
	dev   virtioDevice
	raise func() // sends the interrupt (an irqfd MSI)
	kick  func() // wakes the device goroutine; nil: serve on the caller
	// kickQueue, when set, wakes the goroutine of queue i instead.
	kickQueue func(i int)
	nq        int

	// mu guards the registers; a queue's own lock is taken after it, never
	// before (a queue's server reports a broken queue through the atomics
	// below, not through mu).
	mu          sync.Mutex
	status      uint32
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	qs          [maxQueues]vqueue
	q           *virtqueue // queue 0 (the block device's only one)

	needsReset atomic.Bool   // DEVICE_NEEDS_RESET, ORed into the status
	live       atomic.Bool   // DRIVER_OK set and FEATURES_OK kept
	acked      atomic.Uint64 // drvFeatures, for the queues' servers
	errMu      sync.Mutex
	broken     error // why the device needs a reset
	intStatus  atomic.Uint32
	served     atomic.Uint64 // chains completed (tests, statistics)
}

func newVirtioMMIO(mem *GuestMemory, dev virtioDevice, raise func()) *virtioMMIO {
	t := &virtioMMIO{dev: dev, raise: raise, nq: 1}
	if m, ok := dev.(multiQueue); ok {
		t.nq = min(m.numQueues(), maxQueues)
	}
	for i := range t.qs {
		t.qs[i].q.mem = mem
	}
	t.q = &t.qs[0].q
	return t
}

// reset returns the transport to its state at power-on (status 0). Called
// with mu held; it takes each queue's lock.
func (t *virtioMMIO) reset() {
	t.status, t.devFeatSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0, 0
	t.live.Store(false)
	t.acked.Store(0)
	for i := range t.qs {
		vq := &t.qs[i]
		vq.mu.Lock()
		vq.q = virtqueue{mem: vq.q.mem}
		vq.ready = false
		vq.mu.Unlock()
	}
	t.errMu.Lock()
	t.broken = nil
	t.errMu.Unlock()
	t.needsReset.Store(false)
	t.intStatus.Store(0)
}

// selected returns the queue QueueSel names, or nil.
func (t *virtioMMIO) selected() *vqueue {
	if t.queueSel < uint32(t.nq) {
		return &t.qs[t.queueSel]
	}
	return nil
}

func (t *virtioMMIO) Read(off uint64, data []byte) {
	var v uint32
	if off >= vioConfig {
		cfg := t.dev.config()
		for i := range data {
			data[i] = 0
			if o := off - vioConfig + uint64(i); o < uint64(len(cfg)) {
				data[i] = cfg[o]
			}
		}
		return
	}
	if len(data) != 4 || off%4 != 0 {
		clear(data) // the registers are 32-bit only (§4.2.2.1)
		return
	}
	if off == vioInterruptStatus {
		// Without the lock: the interrupt handler reads it while the
		// goroutine may hold the lock for a batch of requests.
		binary.LittleEndian.PutUint32(data, t.intStatus.Load())
		return
	}
	t.mu.Lock()
	switch off {
	case vioMagic:
		v = vioMagicValue
	case vioVersion:
		v = 2
	case vioDeviceID:
		v = t.dev.deviceID()
	case vioVendorID:
		v = vioVendorAmber
	case vioDeviceFeatures:
		if t.devFeatSel < 2 {
			v = uint32(t.dev.features() >> (32 * t.devFeatSel))
		}
	case vioQueueNumMax:
		if t.selected() != nil {
			v = maxQueueSize
		}
	case vioQueueNum:
		if vq := t.selected(); vq != nil {
			vq.mu.Lock()
			v = uint32(vq.q.size)
			vq.mu.Unlock()
		}
	case vioQueueReady:
		if vq := t.selected(); vq != nil {
			vq.mu.Lock()
			if vq.ready {
				v = 1
			}
			vq.mu.Unlock()
		}
	case vioStatus:
		v = t.status
		if t.needsReset.Load() {
			v |= vioStatusNeedsReset
		}
	case vioConfigGeneration:
		v = 0 // the configuration never changes
	}
	t.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

func (t *virtioMMIO) Write(off uint64, data []byte) {
	if len(data) != 4 || off%4 != 0 || off >= vioConfig {
		return // the configuration space is read-only for our devices
	}
	v := binary.LittleEndian.Uint32(data)
	if off == vioInterruptACK {
		// A cause still pending (set after the driver read the status)
		// interrupts again, as a level-triggered line would stay up.
		if old := t.intStatus.And(^v); old&^v != 0 {
			t.raise()
		}
		return
	}
	if off == vioQueueNotify {
		// Only when the ioeventfd did not take it (another access size)
		// or without one (tests): the goroutine, if any, serves it.
		if v >= uint32(t.nq) {
			return
		}
		switch {
		case t.kickQueue != nil:
			t.kickQueue(int(v))
		case t.kick != nil:
			t.kick()
		default:
			t.process()
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Queue registers may change only while the queue is not ready.
	queueReg := func(set func(q *virtqueue)) {
		if vq := t.selected(); vq != nil {
			vq.mu.Lock()
			if !vq.ready {
				set(&vq.q)
			}
			vq.mu.Unlock()
		}
	}
	switch off {
	case vioDeviceFeatSel:
		t.devFeatSel = v
	case vioDriverFeatSel:
		t.drvFeatSel = v
	case vioDriverFeatures:
		if t.drvFeatSel < 2 && t.status&vioStatusFeaturesOK == 0 {
			shift := 32 * t.drvFeatSel
			t.drvFeatures = t.drvFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
		}
	case vioQueueSel:
		t.queueSel = v
	case vioQueueNum:
		queueReg(func(q *virtqueue) { q.size = uint16(min(v, 0xffff)) })
	case vioQueueDescLow:
		queueReg(func(q *virtqueue) { q.desc = q.desc&^0xffffffff | uint64(v) })
	case vioQueueDescHigh:
		queueReg(func(q *virtqueue) { q.desc = q.desc&0xffffffff | uint64(v)<<32 })
	case vioQueueDriverLow:
		queueReg(func(q *virtqueue) { q.avail = q.avail&^0xffffffff | uint64(v) })
	case vioQueueDriverHigh:
		queueReg(func(q *virtqueue) { q.avail = q.avail&0xffffffff | uint64(v)<<32 })
	case vioQueueDeviceLow:
		queueReg(func(q *virtqueue) { q.used = q.used&^0xffffffff | uint64(v) })
	case vioQueueDeviceHigh:
		queueReg(func(q *virtqueue) { q.used = q.used&0xffffffff | uint64(v)<<32 })
	case vioQueueReady:
		vq := t.selected()
		if vq == nil {
			return
		}
		vq.mu.Lock()
		defer vq.mu.Unlock()
		if v == 0 {
			vq.ready = false
			return
		}
		if vq.ready {
			return
		}
		q := &vq.q
		if err := checkQueueLayout(q.mem, q.size, q.desc, q.avail, q.used); err != nil {
			t.needReset(err)
			return
		}
		q.lastAvail, q.usedIdx = 0, 0
		q.eventIdx = t.drvFeatures&vioFEventIdx != 0
		vq.ready = true
	case vioStatus:
		t.setStatus(v)
	}
}

// setStatus runs the driver's side of the handshake (§3.1.1).
func (t *virtioMMIO) setStatus(v uint32) {
	if v == 0 {
		t.reset()
		return
	}
	if v&vioStatusFeaturesOK != 0 && t.status&vioStatusFeaturesOK == 0 {
		// The driver may take only what was offered, and must take
		// VERSION_1: this device has no legacy interface. Refusing
		// leaves FEATURES_OK clear, which the driver reads back.
		if t.drvFeatures&^t.dev.features() != 0 || t.drvFeatures&vioFVersion1 == 0 {
			v &^= vioStatusFeaturesOK
		}
	}
	t.status = v &^ vioStatusNeedsReset
	t.acked.Store(t.drvFeatures)
	t.live.Store(t.status&vioStatusDriverOK != 0 && t.status&vioStatusFeaturesOK != 0)
}

// negotiated returns the features the driver took (valid once live; a
// queue's server reads it without mu).
func (t *virtioMMIO) negotiated() uint64 { return t.acked.Load() }

// needReset marks the device broken (§2.1.2) and tells the driver with a
// configuration-change interrupt. It may be called with or without mu
// and a queue's lock.
func (t *virtioMMIO) needReset(err error) {
	t.errMu.Lock()
	if t.broken == nil {
		t.broken = err
	}
	t.errMu.Unlock()
	t.needsReset.Store(true)
	t.interrupt(vioIntConfig)
}

// interrupt sets a cause in InterruptStatus and sends the MSI if no cause
// was pending: virtio-mmio's interrupt is a level (InterruptStatus != 0)
// and an MSI an edge, so one edge per rise. The driver acknowledges before
// it looks at the rings, so a cause added while one is pending is seen by
// the same handler run; and the guest's handler never gets a second MSI
// while it runs (the kernel's device vectors share one interrupt stack).
func (t *virtioMMIO) interrupt(cause uint32) {
	if t.intStatus.Or(cause) == 0 {
		t.raise()
	}
}

// errNeedsReset is what process reports once the device is broken.
var errNeedsReset = errors.New("virtio device needs a reset")

// process serves the chains the driver has made available on queue 0, at
// most a queue's worth, then interrupts the driver unless it asked not to
// be. It is the device goroutine's work on every doorbell; more reports
// that chains are left (the goroutine calls again), err the error that
// broke the device, if one did. The bound keeps a call finite even when
// the requests' data rewrites the ring itself.
func (t *virtioMMIO) process() error {
	_, err := t.processSome()
	return err
}

func (t *virtioMMIO) processSome() (more bool, err error) {
	return t.processQueue(0, t.dev.serve)
}

// processQueue is processSome for queue qi with the server serve.
func (t *virtioMMIO) processQueue(qi int, serve func(*chain) (uint32, error)) (more bool, err error) {
	vq := &t.qs[qi]
	vq.mu.Lock()
	defer vq.mu.Unlock()
	if t.needsReset.Load() {
		return false, errNeedsReset
	}
	if !t.live.Load() || !vq.ready {
		return false, nil // a notify before the device is live is ignored
	}
	q := &vq.q
	done, old := 0, q.usedIdx
	defer func() {
		if done > 0 && q.needInterrupt(old) {
			t.interrupt(vioIntUsedBuffer)
		}
	}()
	for done < int(q.size) {
		head, ok, err := q.pop()
		if err == nil && !ok && q.armDoorbell() {
			head, ok, err = q.pop() // entries came while the doorbell was armed
		}
		if err == nil && ok {
			err = q.resolve(head, &vq.c)
		}
		if err != nil {
			t.needReset(err)
			return false, err
		}
		if !ok {
			return false, nil
		}
		n, err := serve(&vq.c)
		if err == nil {
			err = q.push(head, n)
		}
		if err != nil {
			t.needReset(err)
			return false, err
		}
		done++
		t.served.Add(1)
		vq.served.Add(1)
	}
	return true, nil
}

// brokenReason returns why the device needs a reset, or nil.
func (t *virtioMMIO) brokenReason() error {
	t.errMu.Lock()
	defer t.errMu.Unlock()
	return t.broken
}
