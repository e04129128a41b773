package vmm

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Hypercalls: the guest writes a request block's physical address to
// boot.HypercallPort (one port-I/O exit; boot/hypercall.go has the ABI)
// and the VMM serves it through this table. A new hypercall is a number
// in boot/hypercall.go, a handler here, and one row in the table.

// hcHandler serves one hypercall. It returns the value for the block's Ret
// field; reply false leaves the block alone, for calls that do not return
// (exit, crash) or whose guest is being stopped.
type hcHandler func(vm *VM, h *boot.Hypercall) (ret int64, reply bool)

// hypercalls is indexed by boot.Hypercall.Nr; a missing row is ENOSYS.
var hypercalls = [...]hcHandler{
	boot.HCExit:         hcExit,
	boot.HCConsoleWrite: hcConsoleWrite,
	boot.HCConsoleRead:  hcConsoleRead,
	boot.HCIdle:         hcIdle,
	boot.HCFaultAddr:    hcFaultAddr,
	boot.HCCrash:        hcCrash,
	boot.HCMark:         hcMark,
	boot.HCFlushTLB:     hcFlushTLB, // release.go
	boot.HCRelease:      hcRelease,
	boot.HCSnapshot:     hcSnapshot, // snapshot.go
}

const (
	errFault = -14 // EFAULT
	errNoSys = -38 // ENOSYS
)

// hypercallPort is the device at boot.HypercallPort: a 4-byte write is
// the physical address of a request block.
type hypercallPort struct{ vm *VM }

func (p hypercallPort) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

func (p hypercallPort) Write(off uint64, data []byte) {
	if off == 0 && len(data) == 4 {
		p.vm.hypercall(uint64(binary.LittleEndian.Uint32(data)))
	}
}

// hypercall serves the request block at pa.
func (vm *VM) hypercall(pa uint64) {
	const size = uint64(unsafe.Sizeof(boot.Hypercall{}))
	raw, err := vm.mem.Slice(pa, size)
	if err != nil {
		vm.end(vm.crashReport(nil, fmt.Sprintf("hypercall block: %v", err)))
		return
	}
	// Field by field: reflection-based decoding would allocate on every
	// exit.
	le := binary.LittleEndian
	h := boot.Hypercall{Nr: le.Uint64(raw[0:]), A0: le.Uint64(raw[8:]), A1: le.Uint64(raw[16:]), A2: le.Uint64(raw[24:]), A3: le.Uint64(raw[32:])}
	if h.Nr < uint64(len(vm.hcallsBy)) {
		vm.hcallsBy[h.Nr]++
	}
	ret, reply := int64(errNoSys), true
	vm.hcBlock = raw
	if h.Nr < uint64(len(hypercalls)) && hypercalls[h.Nr] != nil {
		ret, reply = hypercalls[h.Nr](vm, &h)
	}
	if reply {
		le.PutUint64(raw[40:], uint64(ret))
	}
}

func hcExit(vm *VM, h *boot.Hypercall) (int64, bool) {
	vm.end(int(h.A0 & 0xff))
	return 0, false
}

func hcConsoleWrite(vm *VM, h *boot.Hypercall) (int64, bool) {
	buf, err := vm.mem.Slice(h.A1, h.A2)
	if err != nil {
		return errFault, true
	}
	o := vm.stdout
	if h.A0 == 2 {
		o = vm.stderr
	}
	n, err := o.write(buf, vm.halt)
	if err == errHalted {
		return 0, false // the loop stops the VM; the guest never sees this call end
	}
	return consoleResult(n, err), true
}

func hcConsoleRead(vm *VM, h *boot.Hypercall) (int64, bool) {
	buf, err := vm.mem.Slice(h.A1, h.A2)
	if err != nil {
		return errFault, true
	}
	return int64(vm.input.read(buf)), true
}

func hcIdle(vm *VM, h *boot.Hypercall) (int64, bool) {
	return int64(vm.idle(int64(h.A0))), true
}

func hcFaultAddr(vm *VM, h *boot.Hypercall) (int64, bool) {
	s, err := vm.vcpu.Sregs()
	if err != nil {
		return 0, true
	}
	return int64(s.CR2), true
}

func hcCrash(vm *VM, h *boot.Hypercall) (int64, bool) {
	msg := "kernel panic"
	if b, err := vm.mem.Slice(h.A1, min(h.A2, 4096)); err == nil && len(b) > 0 {
		msg = string(b)
	}
	var tf *boot.TrapFrame
	if h.A0 != 0 {
		tf = new(boot.TrapFrame)
		b, err := vm.mem.Slice(h.A0, uint64(unsafe.Sizeof(*tf)))
		if err == nil {
			binary.Decode(b, binary.LittleEndian, tf)
		} else {
			tf = nil
		}
	}
	status := vm.crashReport(tf, msg)
	if h.A3 > 0 && h.A3 < 256 {
		status = int(h.A3)
	}
	vm.end(status)
	return 0, false
}

func hcMark(vm *VM, h *boot.Hypercall) (int64, bool) {
	if len(vm.marks) < maxMarks {
		vm.marks = append(vm.marks, Mark{ID: h.A0, SinceBoot: vm.tscToDuration(h.A1 - vm.bootTSC)})
	} else {
		vm.lostMarks++
	}
	return 0, true
}
