package vmm

import (
	"testing"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
)

// The request numbers and structure sizes of kvmapi.go against the values
// linux/kvm.h gives on x86-64 (printed by a C program from the header): a
// wrong size makes a different request number, which KVM rejects, or
// worse, a matching one that reads past the structure.
func TestKVMRequestEncodings(t *testing.T) {
	for _, c := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"KVM_IOEVENTFD", kvm.IIOW(kvmIOEventFDNr, unsafe.Sizeof(ioEventFD{})), 0x4040ae79},
		{"KVM_IRQFD", kvm.IIOW(kvmIRQFDNr, unsafe.Sizeof(irqFD{})), 0x4020ae76},
		{"KVM_SET_GSI_ROUTING", kvm.IIOW(kvmSetGSIRoutingNr, 8), 0x4008ae6a},
		{"KVM_GET_XSAVE", kvm.IIOR(kvmGetXSaveNr, unsafe.Sizeof(XSave{})), 0x9000aea4},
		{"KVM_SET_XSAVE", kvm.IIOW(kvmSetXSaveNr, unsafe.Sizeof(XSave{})), 0x5000aea5},
		{"KVM_GET_XCRS", kvm.IIOR(kvmGetXCRSNr, unsafe.Sizeof(XCRS{})), 0x8188aea6},
		{"KVM_SET_XCRS", kvm.IIOW(kvmSetXCRSNr, unsafe.Sizeof(XCRS{})), 0x4188aea7},
		{"KVM_GET_LAPIC", kvm.IIOR(kvmGetLAPICNr, unsafe.Sizeof(LAPIC{})), 0x8400ae8e},
		{"KVM_SET_LAPIC", kvm.IIOW(kvmSetLAPICNr, unsafe.Sizeof(LAPIC{})), 0x4400ae8f},
		{"KVM_GET_MP_STATE", kvm.IIOR(kvmGetMPStateNr, unsafe.Sizeof(MPState{})), 0x8004ae98},
		{"KVM_SET_MP_STATE", kvm.IIOW(kvmSetMPStateNr, unsafe.Sizeof(MPState{})), 0x4004ae99},
		{"KVM_GET_VCPU_EVENTS", kvm.IIOR(kvmGetVCPUEventsNr, unsafe.Sizeof(VCPUEvents{})), 0x8040ae9f},
		{"KVM_SET_VCPU_EVENTS", kvm.IIOW(kvmSetVCPUEventsNr, unsafe.Sizeof(VCPUEvents{})), 0x4040aea0},
		{"KVM_GET_DIRTY_LOG", kvm.IIOW(kvmGetDirtyLogNr, unsafe.Sizeof(dirtyLog{})), 0x4010ae42},
		{"KVM_ENABLE_CAP", kvm.IIOW(kvmEnableCapNr, unsafe.Sizeof(enableCap{})), 0x4068aea3},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if s := unsafe.Sizeof(irqRoutingEntry{}); s != 48 {
		t.Errorf("kvm_irq_routing_entry is %d bytes, want 48", s)
	}
	if o := unsafe.Offsetof(VCPUEvents{}.ExceptionPayload); o != 56 {
		t.Errorf("kvm_vcpu_events.exception_payload at %d, want 56", o)
	}
}

// An MSI route for the LAPIC: physical destination 0, fixed delivery,
// edge, the vector in the data word.
func TestMSIRoute(t *testing.T) {
	r := msiRoute(3, 0x41)
	b := (*[48]byte)(unsafe.Pointer(&r))
	want := [48]byte{0: 3, 4: irqRoutingMSI, 16: 0x00, 17: 0x00, 18: 0xe0, 19: 0xfe, 24: 0x41}
	if *b != want {
		t.Errorf("route bytes\n% x\nwant\n% x", b[:], want[:])
	}
}
