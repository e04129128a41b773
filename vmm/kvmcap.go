package vmm

import (
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// KVM ioctls gokvm lacks.

// enableCap is struct kvm_enable_cap.
type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

const (
	kvmEnableCap         = 0xa3
	capSplitIRQChip      = 121
	splitIRQChipIOAPICNr = 24
)

// enableSplitIRQChip gives the VM an in-kernel local APIC without the
// in-kernel PIC, IOAPIC and PIT: what the guest uses (the LAPIC timer),
// without the full irqchip, whose teardown costs ~12 ms here.
func enableSplitIRQChip(vmFd uintptr) error {
	c := enableCap{Cap: capSplitIRQChip}
	c.Args[0] = splitIRQChipIOAPICNr
	_, err := kvm.Ioctl(vmFd, kvm.IIOW(kvmEnableCap, unsafe.Sizeof(c)), uintptr(unsafe.Pointer(&c)))
	return err
}

// kvmRunNr is KVM_RUN's ioctl number (_IO(KVMIO, 0x80)).
const kvmRunNr = 0x80

// kvmRun enters the vCPU once. gokvm's kvm.Run turns EINTR and EAGAIN into
// success, but KVM writes no exit reason then (immediate_exit, or a signal
// that arrived before the guest ran), so the caller would act on the exit
// it had already served. The errno is returned as it is.
func kvmRun(vcpuFd uintptr) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vcpuFd, kvm.IIO(kvmRunNr), 0)
	return errno
}
