package vmm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/bobuhiro11/gokvm/kvm"
)

// sampleVCPUState is a vCPU state with every part filled.
func sampleVCPUState() *VCPUState {
	var st VCPUState
	for i := range st.XSave.Region {
		st.XSave.Region[i] = uint32(i)*0x01010101 + 7
	}
	for i := range st.LAPIC.Regs {
		st.LAPIC.Regs[i] = byte(i*13 + 1)
	}
	st.Regs.RIP, st.Regs.RSP = 0x201000, 0x7fff0000
	st.Sregs.CR3, st.Sregs.EFER = 0x1000, 0xd01
	st.XCRS.NrXCRS, st.XCRS.XCRs[0].Value = 1, 7
	st.MPState.State = 3
	st.Events.Exception.Nr = 14
	for i := range 30 {
		st.MSRs = append(st.MSRs, kvm.MSREntry{Index: uint32(0xc0000080 + i), Data: uint64(i) << 33})
	}
	return &st
}

// The vCPU state goes through a snapshot's encoding unchanged; the JSON
// of older snapshots still decodes; a truncated, extended, foreign or
// later-version object is refused.
func TestVCPUStateEncoding(t *testing.T) {
	st := sampleVCPUState()
	for i, p := range vcpuStateParts(st) {
		if v := []any{st.Regs, st.Sregs, st.XSave, st.XCRS, st.LAPIC, st.MPState, st.Events}[i]; binary.Size(v) != len(p) {
			t.Errorf("part %d (%T): %d bytes in memory, %d without padding", i, v, len(p), binary.Size(v))
		}
	}
	b := encodeVCPUState(st)
	var got VCPUState
	if err := decodeVCPUState(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, st) {
		t.Errorf("the state changed through its encoding")
	}
	old, _ := json.Marshal(st)
	var o VCPUState
	if err := decodeVCPUState(old, &o); err != nil || !reflect.DeepEqual(&o, st) {
		t.Errorf("the JSON of older snapshots: %v, equal %v", err, reflect.DeepEqual(&o, st))
	}
	later := bytes.Clone(b)
	later[len(vcpuStateMagic)] = 2
	for name, bad := range map[string][]byte{
		"truncated": b[:len(b)-1],
		"extended":  append(bytes.Clone(b), 0),
		"foreign":   []byte("not a state"),
		"version 2": later,
		"empty":     nil,
	} {
		if err := decodeVCPUState(bad, &o); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// BenchmarkVCPUStateDecode: decoding a snapshot's vCPU state, part of
// every restore, against the JSON it replaced, in the same run.
func BenchmarkVCPUStateDecode(b *testing.B) {
	st := sampleVCPUState()
	bin := encodeVCPUState(st)
	js, _ := json.Marshal(st)
	for _, c := range []struct {
		name string
		data []byte
	}{{"binary", bin}, {"json", js}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				var s VCPUState
				if err := decodeVCPUState(c.data, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
