package vmm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
)

// A snapshot's vcpu object is VCPUState in a fixed binary layout (the KVM
// structures as the ioctls take them, little-endian): as JSON, with the
// XSAVE area and the LAPIC page as arrays of 5,000 numbers, decoding it
// was the largest part of a restore's own work. Snapshots written before
// hold JSON, which decodeVCPUState still reads.
//
//	"AMBRVCPU" version:u32 nmsrs:u32 Regs Sregs XSave XCRS LAPIC MPState Events MSRs[nmsrs]

var vcpuStateMagic = []byte("AMBRVCPU")

const (
	vcpuStateVersion = 1
	maxStateMSRs     = 1024 // far above stateMSRs: a bound for a corrupt count
)

// vcpuStateParts are the memory of s's fixed-size parts, in the
// layout's order: the KVM structures as the ioctls fill them (the host is
// x86-64, little-endian; TestVCPUStateEncoding checks they have no
// padding Go adds).
func vcpuStateParts(s *VCPUState) [][]byte {
	return [][]byte{raw(&s.Regs), raw(&s.Sregs), raw(&s.XSave), raw(&s.XCRS), raw(&s.LAPIC), raw(&s.MPState), raw(&s.Events)}
}

// raw is the memory of *p.
func raw[T any](p *T) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p)) }

// rawMSRs is the memory of the MSR entries.
func rawMSRs(m []kvm.MSREntry) []byte {
	if len(m) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&m[0])), len(m)*int(unsafe.Sizeof(m[0])))
}

// encodeVCPUState makes the vcpu object of a snapshot.
func encodeVCPUState(s *VCPUState) []byte {
	b := make([]byte, 0, 8192)
	b = append(b, vcpuStateMagic...)
	b = binary.LittleEndian.AppendUint32(b, vcpuStateVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.MSRs)))
	for _, p := range vcpuStateParts(s) {
		b = append(b, p...)
	}
	return append(b, rawMSRs(s.MSRs)...)
}

// decodeVCPUState reads a snapshot's vcpu object: the binary layout, or
// the JSON of snapshots written before it.
func decodeVCPUState(data []byte, s *VCPUState) error {
	if len(data) > 0 && data[0] == '{' {
		return json.Unmarshal(data, s)
	}
	if !bytes.HasPrefix(data, vcpuStateMagic) || len(data) < len(vcpuStateMagic)+8 {
		return errors.New("not a vCPU state (no AMBRVCPU header)")
	}
	data = data[len(vcpuStateMagic):]
	version, n := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
	data = data[8:]
	if version != vcpuStateVersion {
		return fmt.Errorf("vCPU state layout version %d, this vmm reads %d", version, vcpuStateVersion)
	}
	if n > maxStateMSRs {
		return fmt.Errorf("vCPU state with %d MSRs (at most %d)", n, maxStateMSRs)
	}
	s.MSRs = make([]kvm.MSREntry, n)
	parts := append(vcpuStateParts(s), rawMSRs(s.MSRs))
	want := 0
	for _, p := range parts {
		want += len(p)
	}
	if len(data) != want {
		return fmt.Errorf("vCPU state of %d bytes, want %d for %d MSRs", len(data), want, n)
	}
	for _, p := range parts {
		data = data[copy(p, data):]
	}
	return nil
}
