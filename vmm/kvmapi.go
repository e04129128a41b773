package vmm

import (
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// The KVM ioctls gokvm lacks, with their structures as linux/kvm.h lays
// them out on x86-64 (kvmapi_test.go checks sizes and request numbers
// against the header's values). Everything else comes from gokvm's kvm
// package.

// Request numbers (the nr of _IO*(KVMIO, nr, size)).
const (
	kvmGetDirtyLogNr    = 0x42
	kvmSetGSIRoutingNr  = 0x6a
	kvmIRQFDNr          = 0x76
	kvmIOEventFDNr      = 0x79
	kvmRunNr            = 0x80
	kvmGetLAPICNr       = 0x8e
	kvmSetLAPICNr       = 0x8f
	kvmGetMPStateNr     = 0x98
	kvmSetMPStateNr     = 0x99
	kvmGetVCPUEventsNr  = 0x9f
	kvmSetVCPUEventsNr  = 0xa0
	kvmEnableCapNr      = 0xa3
	kvmGetXSaveNr       = 0xa4
	kvmSetXSaveNr       = 0xa5
	kvmGetXCRSNr        = 0xa6
	kvmSetXCRSNr        = 0xa7
	capSplitIRQChip     = 121
	splitIRQChipIOAPICs = 24

	// memLogDirtyPages is KVM_MEM_LOG_DIRTY_PAGES, a memory-region flag.
	memLogDirtyPages = 1 << 0
)

// ioctl issues a request whose argument is the structure at p.
func ioctl(fd uintptr, req uintptr, p unsafe.Pointer) error {
	_, err := kvm.Ioctl(fd, req, uintptr(p))
	return err
}

// enableCap is struct kvm_enable_cap.
type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

// enableSplitIRQChip gives the VM an in-kernel local APIC without the
// in-kernel PIC, IOAPIC and PIT: what the guest uses (the LAPIC timer,
// MSIs from devices), without the full irqchip, whose teardown costs
// ~12 ms here.
func enableSplitIRQChip(vmFd uintptr) error {
	c := enableCap{Cap: capSplitIRQChip}
	c.Args[0] = splitIRQChipIOAPICs
	return ioctl(vmFd, kvm.IIOW(kvmEnableCapNr, unsafe.Sizeof(c)), unsafe.Pointer(&c))
}

// kvmRun enters the vCPU once. gokvm's kvm.Run turns EINTR and EAGAIN into
// success, but KVM writes no exit reason then (immediate_exit, or a signal
// that arrived before the guest ran), so the caller would act on the exit
// it had already served. The errno is returned as it is.
func kvmRun(vcpuFd uintptr) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vcpuFd, kvm.IIO(kvmRunNr), 0)
	return errno
}

// ioEventFD is struct kvm_ioeventfd.
type ioEventFD struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// ioEventFD flags.
const (
	ioEventFDDataMatch = 1 << 0
	ioEventFDPIO       = 1 << 1
	ioEventFDDeassign  = 1 << 2
)

// setIOEventFD makes a guest write of len bytes at addr (a port with pio)
// signal the eventfd fd inside KVM, without an exit to this process; with
// deassign it removes that again.
func setIOEventFD(vmFd uintptr, fd int, addr uint64, length uint32, pio, deassign bool) error {
	return setIOEventFDMatch(vmFd, fd, addr, length, pio, deassign, -1)
}

// setIOEventFDMatch is setIOEventFD for writes of the value match only
// (match < 0: any value): one doorbell register, one eventfd per queue.
func setIOEventFDMatch(vmFd uintptr, fd int, addr uint64, length uint32, pio, deassign bool, match int64) error {
	e := ioEventFD{Addr: addr, Len: length, FD: int32(fd)}
	if match >= 0 {
		e.Flags |= ioEventFDDataMatch
		e.DataMatch = uint64(match)
	}
	if pio {
		e.Flags |= ioEventFDPIO
	}
	if deassign {
		e.Flags |= ioEventFDDeassign
	}
	return ioctl(vmFd, kvm.IIOW(kvmIOEventFDNr, unsafe.Sizeof(e)), unsafe.Pointer(&e))
}

// irqFD is struct kvm_irqfd.
type irqFD struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

const irqFDDeassign = 1 << 0

// setIRQFD makes a signal of the eventfd fd raise gsi inside KVM (with
// deassign: no longer).
func setIRQFD(vmFd uintptr, fd int, gsi uint32, deassign bool) error {
	r := irqFD{FD: uint32(fd), GSI: gsi}
	if deassign {
		r.Flags = irqFDDeassign
	}
	return ioctl(vmFd, kvm.IIOW(kvmIRQFDNr, unsafe.Sizeof(r)), unsafe.Pointer(&r))
}

// irqRoutingEntry is struct kvm_irq_routing_entry with the MSI member of
// its union (the only kind this VMM routes: there is no IOAPIC).
type irqRoutingEntry struct {
	_      [0]uint64 // the union holds 64-bit members
	GSI    uint32
	Type   uint32
	Flags  uint32
	_      uint32
	AddrLo uint32
	AddrHi uint32
	Data   uint32
	_      [5]uint32
}

const irqRoutingMSI = 2

// msiRoute routes gsi to an MSI at vector for the local APIC with ID 0:
// fixed delivery, edge-triggered, physical destination (Intel SDM vol. 3,
// 11.11: address 0xfee00000 | dest << 12, data = vector).
func msiRoute(gsi uint32, vector uint8) irqRoutingEntry {
	return irqRoutingEntry{GSI: gsi, Type: irqRoutingMSI, AddrLo: 0xfee00000, Data: uint32(vector)}
}

// setGSIRouting replaces the VM's whole routing table: struct
// kvm_irq_routing, a count and flags followed by the entries.
func setGSIRouting(vmFd uintptr, routes []irqRoutingEntry) error {
	const head = 8
	buf := make([]byte, head+len(routes)*int(unsafe.Sizeof(irqRoutingEntry{}))+8)
	// Aligned for the entries' 64-bit union.
	off := int(-uintptr(unsafe.Pointer(&buf[0])) & 7)
	b := buf[off:]
	*(*uint32)(unsafe.Pointer(&b[0])) = uint32(len(routes))
	for i, r := range routes {
		*(*irqRoutingEntry)(unsafe.Pointer(&b[head+i*int(unsafe.Sizeof(r))])) = r
	}
	return ioctl(vmFd, kvm.IIOW(kvmSetGSIRoutingNr, head), unsafe.Pointer(&b[0]))
}

// XSave is struct kvm_xsave: the vCPU's x87/SSE/AVX state in the XSAVE
// layout (the legacy 4 KiB; larger features such as AMX would need
// KVM_GET_XSAVE2, which the guest's XCR0 never enables).
type XSave struct {
	Region [1024]uint32
}

func getXSave(vcpuFd uintptr, x *XSave) error {
	return ioctl(vcpuFd, kvm.IIOR(kvmGetXSaveNr, unsafe.Sizeof(*x)), unsafe.Pointer(x))
}

func setXSave(vcpuFd uintptr, x *XSave) error {
	return ioctl(vcpuFd, kvm.IIOW(kvmSetXSaveNr, unsafe.Sizeof(*x)), unsafe.Pointer(x))
}

// XCRS is struct kvm_xcrs: the extended control registers (XCR0).
type XCRS struct {
	NrXCRS uint32
	Flags  uint32
	XCRs   [16]struct {
		XCR   uint32
		_     uint32
		Value uint64
	}
	_ [16]uint64
}

func getXCRS(vcpuFd uintptr, x *XCRS) error {
	return ioctl(vcpuFd, kvm.IIOR(kvmGetXCRSNr, unsafe.Sizeof(*x)), unsafe.Pointer(x))
}

func setXCRS(vcpuFd uintptr, x *XCRS) error {
	return ioctl(vcpuFd, kvm.IIOW(kvmSetXCRSNr, unsafe.Sizeof(*x)), unsafe.Pointer(x))
}

// LAPIC is struct kvm_lapic_state: the local APIC's register page.
type LAPIC struct {
	Regs [1024]byte
}

func getLAPIC(vcpuFd uintptr, l *LAPIC) error {
	return ioctl(vcpuFd, kvm.IIOR(kvmGetLAPICNr, unsafe.Sizeof(*l)), unsafe.Pointer(l))
}

func setLAPIC(vcpuFd uintptr, l *LAPIC) error {
	return ioctl(vcpuFd, kvm.IIOW(kvmSetLAPICNr, unsafe.Sizeof(*l)), unsafe.Pointer(l))
}

// MPState is struct kvm_mp_state (KVM_MP_STATE_RUNNABLE = 0, HALTED = 3, ...).
type MPState struct {
	State uint32
}

func getMPState(vcpuFd uintptr, m *MPState) error {
	return ioctl(vcpuFd, kvm.IIOR(kvmGetMPStateNr, unsafe.Sizeof(*m)), unsafe.Pointer(m))
}

func setMPState(vcpuFd uintptr, m *MPState) error {
	return ioctl(vcpuFd, kvm.IIOW(kvmSetMPStateNr, unsafe.Sizeof(*m)), unsafe.Pointer(m))
}

// VCPUEvents is struct kvm_vcpu_events: exceptions, interrupts, NMIs and
// SMIs that are pending or being injected, and the interrupt shadow.
type VCPUEvents struct {
	Exception struct {
		Injected, Nr, HasErrorCode, Pending uint8
		ErrorCode                           uint32
	}
	Interrupt struct {
		Injected, Nr, Soft, Shadow uint8
	}
	NMI struct {
		Injected, Pending, Masked, _ uint8
	}
	SIPIVector uint32
	Flags      uint32
	SMI        struct {
		SMM, Pending, SMMInsideNMI, LatchedInit uint8
	}
	TripleFaultPending  uint8
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

func getVCPUEvents(vcpuFd uintptr, e *VCPUEvents) error {
	return ioctl(vcpuFd, kvm.IIOR(kvmGetVCPUEventsNr, unsafe.Sizeof(*e)), unsafe.Pointer(e))
}

func setVCPUEvents(vcpuFd uintptr, e *VCPUEvents) error {
	return ioctl(vcpuFd, kvm.IIOW(kvmSetVCPUEventsNr, unsafe.Sizeof(*e)), unsafe.Pointer(e))
}

// dirtyLog is struct kvm_dirty_log.
type dirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap uint64 // a user pointer: one bit per page of the slot
}

// getDirtyLog fills bitmap (one bit per 4 KiB page of the slot, at least
// pages/64 words) with the pages written since the last call, for a slot
// registered with memLogDirtyPages, and clears KVM's log.
func getDirtyLog(vmFd uintptr, slot uint32, bitmap []uint64) error {
	d := dirtyLog{Slot: slot, Bitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	return ioctl(vmFd, kvm.IIOW(kvmGetDirtyLogNr, unsafe.Sizeof(d)), unsafe.Pointer(&d))
}
