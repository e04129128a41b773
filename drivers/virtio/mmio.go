// Package virtio drives virtio 1.x devices over the MMIO transport
// (virtio spec v1.2 §4.2) with split virtqueues (§2.7), and the block
// device on top (§5.2). It is kernel-core code: every function is
// //go:nosplit and allocates nothing, the memory for rings and requests
// comes from the caller (the kernel's page allocator) as physical
// addresses, and nothing here waits: the caller decides whether to spin
// on Poll or to sleep until the device's interrupt.
//
// Register access goes through the type parameter R (Regs) so the host
// tests can put a fake device behind the same code the guest runs; the
// kernel's instance, MMIO, holds no pointer, so storing it needs no
// write barrier.
package virtio

import (
	"sync/atomic"
	"unsafe"
)

// Regs reads and writes the 32-bit registers of one transport, offsets
// from its base.
type Regs interface {
	Read32(off uintptr) uint32
	Write32(off uintptr, v uint32)
}

// MMIO is a transport's register window in the address space, mapped
// uncached by the kernel.
type MMIO struct{ Base uintptr }

//go:nosplit
func (m MMIO) Read32(off uintptr) uint32 { return atomic.LoadUint32(u32at(m.Base + off)) }

// Write32 is a plain MOV: atomic.StoreUint32 is an XCHG, which the
// hypervisor emulates on MMIO as a read and a write, a second exit to
// the VMM per register write (and a QueueNotify doorbell that KVM's
// ioeventfd would have taken without any). Not inlined, so the compiler
// cannot merge two writes to one register (the status handshake writes
// RegStatus twice in a row) or move one; x86 keeps stores in order.
//
//go:nosplit
//go:noinline
func (m MMIO) Write32(off uintptr, v uint32) { *u32at(m.Base + off) = v }

// Register offsets of the virtio-mmio transport, version 2 (§4.2.2).
const (
	RegMagic            = 0x000
	RegVersion          = 0x004
	RegDeviceID         = 0x008
	RegVendorID         = 0x00c
	RegDeviceFeatures   = 0x010
	RegDeviceFeatSel    = 0x014
	RegDriverFeatures   = 0x020
	RegDriverFeatSel    = 0x024
	RegQueueSel         = 0x030
	RegQueueNumMax      = 0x034
	RegQueueNum         = 0x038
	RegQueueReady       = 0x044
	RegQueueNotify      = 0x050
	RegInterruptStatus  = 0x060
	RegInterruptACK     = 0x064
	RegStatus           = 0x070
	RegQueueDescLow     = 0x080
	RegQueueDescHigh    = 0x084
	RegQueueDriverLow   = 0x090
	RegQueueDriverHigh  = 0x094
	RegQueueDeviceLow   = 0x0a0
	RegQueueDeviceHigh  = 0x0a4
	RegConfigGeneration = 0x0fc
	RegConfig           = 0x100

	Magic = 0x74726976 // "virt"
)

// Device status bits (§2.1).
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 64
	StatusFailed      = 128
)

// FeatureVersion1 marks a virtio 1.x device (§6); the driver requires it.
const FeatureVersion1 = 1 << 32

// FeatureEventIdx is VIRTIO_F_EVENT_IDX (§6): used_event and avail_event
// suppress interrupts and doorbells in place of the rings' flags.
const FeatureEventIdx = 1 << 29

// Device IDs (§5).
const DeviceBlock = 2

// Transport is one virtio-mmio device.
type Transport[R Regs] struct {
	R        R
	DeviceID uint32
	Features uint64 // negotiated
	Offered  uint64 // what the device offered
}

// Probe checks that a virtio 1.x device sits behind the registers. It
// returns why not, or "" (also when no device is attached: then
// DeviceID is 0).
//
//go:nosplit
func (t *Transport[R]) Probe() string {
	if t.R.Read32(RegMagic) != Magic {
		return "no virtio-mmio magic value"
	}
	switch t.R.Read32(RegVersion) {
	case 2:
	case 1:
		// QEMU's default for virtio-mmio (-global virtio-mmio.force-legacy=false
		// turns it off).
		return "legacy (version 1) virtio-mmio device; virtio 1.x is required"
	default:
		return "unknown virtio-mmio version"
	}
	t.DeviceID = t.R.Read32(RegDeviceID)
	return ""
}

// Negotiate resets the device and runs the handshake up to FEATURES_OK
// (§3.1.1 steps 1-6): the driver takes the features in want that the
// device offers, and VERSION_1, which the device must offer.
//
//go:nosplit
func (t *Transport[R]) Negotiate(want uint64) string {
	r := t.R
	r.Write32(RegStatus, 0)
	for i := 0; r.Read32(RegStatus) != 0; i++ {
		if i > 1_000_000 {
			return "device does not reset"
		}
	}
	r.Write32(RegStatus, StatusAcknowledge)
	r.Write32(RegStatus, StatusAcknowledge|StatusDriver)
	r.Write32(RegDeviceFeatSel, 0)
	offered := uint64(r.Read32(RegDeviceFeatures))
	r.Write32(RegDeviceFeatSel, 1)
	offered |= uint64(r.Read32(RegDeviceFeatures)) << 32
	if offered&FeatureVersion1 == 0 {
		t.Fail()
		return "device does not offer VERSION_1"
	}
	t.Offered = offered
	t.Features = offered & (want | FeatureVersion1)
	r.Write32(RegDriverFeatSel, 0)
	r.Write32(RegDriverFeatures, uint32(t.Features))
	r.Write32(RegDriverFeatSel, 1)
	r.Write32(RegDriverFeatures, uint32(t.Features>>32))
	r.Write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if r.Read32(RegStatus)&StatusFeaturesOK == 0 {
		t.Fail()
		return "device refused the features (FEATURES_OK not kept)"
	}
	return ""
}

// SetupQueue sizes queue idx (a power of two up to max and the device's
// limit), lays q out in the given memory and tells the device where.
//
//go:nosplit
func (t *Transport[R]) SetupQueue(idx uint32, q *Queue, max uint16, descAvail, used uintptr) string {
	r := t.R
	r.Write32(RegQueueSel, idx)
	if r.Read32(RegQueueReady) != 0 {
		return "queue already in use"
	}
	devMax := r.Read32(RegQueueNumMax)
	if devMax == 0 {
		return "queue not available"
	}
	size := uint32(1)
	for size*2 <= devMax && size*2 <= uint32(max) {
		size *= 2
	}
	q.Init(uint16(size), descAvail, used)
	r.Write32(RegQueueNum, size)
	r.Write32(RegQueueDescLow, uint32(descAvail))
	r.Write32(RegQueueDescHigh, uint32(uint64(descAvail)>>32))
	r.Write32(RegQueueDriverLow, uint32(q.Avail))
	r.Write32(RegQueueDriverHigh, uint32(uint64(q.Avail)>>32))
	r.Write32(RegQueueDeviceLow, uint32(used))
	r.Write32(RegQueueDeviceHigh, uint32(uint64(used)>>32))
	r.Write32(RegQueueReady, 1)
	return ""
}

// Ready completes the handshake: the device may be used.
//
//go:nosplit
func (t *Transport[R]) Ready() {
	t.R.Write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
}

// Fail tells the device the driver gave up on it.
//
//go:nosplit
func (t *Transport[R]) Fail() {
	t.R.Write32(RegStatus, t.R.Read32(RegStatus)|StatusFailed)
}

// Notify tells the device that queue idx has new buffers.
//
//go:nosplit
func (t *Transport[R]) Notify(idx uint32) { t.R.Write32(RegQueueNotify, idx) }

// AckInterrupt reads and acknowledges the interrupt causes (bit 0: used
// buffers, bit 1: configuration change): the interrupt handler's job.
//
//go:nosplit
func (t *Transport[R]) AckInterrupt() uint32 {
	s := t.R.Read32(RegInterruptStatus)
	if s != 0 {
		t.R.Write32(RegInterruptACK, s)
	}
	return s
}

// Config32 reads a 32-bit field of the device-specific configuration.
//
//go:nosplit
func (t *Transport[R]) Config32(off uintptr) uint32 { return t.R.Read32(RegConfig + off) }

// Config64 reads a 64-bit field as two halves, again if the device
// changed the configuration in between (§4.2.2.2).
//
//go:nosplit
func (t *Transport[R]) Config64(off uintptr) uint64 {
	for {
		g := t.R.Read32(RegConfigGeneration)
		v := uint64(t.R.Read32(RegConfig+off)) | uint64(t.R.Read32(RegConfig+off+4))<<32
		if t.R.Read32(RegConfigGeneration) == g {
			return v
		}
	}
}

//go:nosplit
func ptr(a uintptr) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(nil), a) }

//go:nosplit
func u16at(a uintptr) *uint16 { return (*uint16)(ptr(a)) }

//go:nosplit
func u32at(a uintptr) *uint32 { return (*uint32)(ptr(a)) }

//go:nosplit
func u64at(a uintptr) *uint64 { return (*uint64)(ptr(a)) }
