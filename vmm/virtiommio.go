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
	// serve handles one available chain and returns the bytes it wrote
	// into the chain's device-writable buffers. An error breaks the
	// queue: the device then needs a reset.
	serve(c *chain) (uint32, error)
}

// virtioMMIO is one transport with one queue (all the block device
// needs).
type virtioMMIO struct {
	dev   virtioDevice
	raise func() // sends the interrupt (an irqfd MSI)
	kick  func() // wakes the device goroutine; nil: serve on the caller

	mu          sync.Mutex // the registers and the queue, against the device goroutine
	status      uint32
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	q           virtqueue
	qReady      bool
	broken      error // why the device needs a reset
	c           chain // scratch, reused per request
	intStatus   atomic.Uint32
	served      atomic.Uint64 // chains completed (tests, statistics)
}

func newVirtioMMIO(mem *GuestMemory, dev virtioDevice, raise func()) *virtioMMIO {
	return &virtioMMIO{dev: dev, raise: raise, q: virtqueue{mem: mem}}
}

// reset returns the transport to its state at power-on (status 0).
func (t *virtioMMIO) reset() {
	mem := t.q.mem
	t.status, t.devFeatSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0, 0
	t.q = virtqueue{mem: mem}
	t.qReady = false
	t.broken = nil
	t.intStatus.Store(0)
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
		if t.queueSel == 0 {
			v = maxQueueSize
		}
	case vioQueueNum:
		if t.queueSel == 0 {
			v = uint32(t.q.size)
		}
	case vioQueueReady:
		if t.queueSel == 0 && t.qReady {
			v = 1
		}
	case vioStatus:
		v = t.status
	case vioConfigGeneration:
		v = 0 // the configuration never changes
	}
	t.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

func (t *virtioMMIO) Write(off uint64, data []byte) {
	if len(data) != 4 || off%4 != 0 || off >= vioConfig {
		return // the configuration space is read-only for the block device
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
		if v != 0 {
			return
		}
		if t.kick != nil {
			t.kick()
		} else {
			t.process()
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Queue registers may change only while the queue is not ready.
	queueReg := func(set func()) {
		if t.queueSel == 0 && !t.qReady {
			set()
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
		queueReg(func() { t.q.size = uint16(min(v, 0xffff)) })
	case vioQueueDescLow:
		queueReg(func() { t.q.desc = t.q.desc&^0xffffffff | uint64(v) })
	case vioQueueDescHigh:
		queueReg(func() { t.q.desc = t.q.desc&0xffffffff | uint64(v)<<32 })
	case vioQueueDriverLow:
		queueReg(func() { t.q.avail = t.q.avail&^0xffffffff | uint64(v) })
	case vioQueueDriverHigh:
		queueReg(func() { t.q.avail = t.q.avail&0xffffffff | uint64(v)<<32 })
	case vioQueueDeviceLow:
		queueReg(func() { t.q.used = t.q.used&^0xffffffff | uint64(v) })
	case vioQueueDeviceHigh:
		queueReg(func() { t.q.used = t.q.used&0xffffffff | uint64(v)<<32 })
	case vioQueueReady:
		if t.queueSel != 0 {
			return
		}
		if v == 0 {
			t.qReady = false
			return
		}
		if t.qReady {
			return
		}
		q := &t.q
		if err := checkQueueLayout(q.mem, q.size, q.desc, q.avail, q.used); err != nil {
			t.needReset(err)
			return
		}
		q.lastAvail, q.usedIdx = 0, 0
		t.qReady = true
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
	t.status = v | t.status&vioStatusNeedsReset
}

// needReset marks the device broken (§2.1.2) and tells the driver with a
// configuration-change interrupt. Called with mu held.
func (t *virtioMMIO) needReset(err error) {
	if t.broken == nil {
		t.broken = err
	}
	t.status |= vioStatusNeedsReset
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

// process serves the chains the driver has made available, at most a
// queue's worth, then interrupts the driver unless it asked not to be. It
// is the device goroutine's work on every doorbell; more reports that
// chains are left (the goroutine calls again), err the error that broke
// the device, if one did. The bound keeps a call finite even when the
// requests' data rewrites the ring itself.
func (t *virtioMMIO) process() error {
	_, err := t.processSome()
	return err
}

func (t *virtioMMIO) processSome() (more bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return false, errNeedsReset
	}
	if t.status&vioStatusDriverOK == 0 || !t.qReady {
		return false, nil // a notify before the device is live is ignored
	}
	q := &t.q
	done := 0
	defer func() {
		if done > 0 && q.availFlags()&vringAvailNoInterrupt == 0 {
			t.interrupt(vioIntUsedBuffer)
		}
	}()
	for done < int(q.size) {
		head, ok, err := q.pop()
		if err == nil && ok {
			err = q.resolve(head, &t.c)
		}
		if err != nil {
			t.needReset(err)
			return false, err
		}
		if !ok {
			return false, nil
		}
		n, err := t.dev.serve(&t.c)
		if err == nil {
			err = q.push(head, n)
		}
		if err != nil {
			t.needReset(err)
			return false, err
		}
		done++
		t.served.Add(1)
	}
	return true, nil
}

// brokenReason returns why the device needs a reset, or nil.
func (t *virtioMMIO) brokenReason() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.broken
}
