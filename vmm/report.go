package vmm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/vmm/crash"
	"github.com/bobuhiro11/gokvm/kvm"
)

var (
	symbolsMu    sync.Mutex
	symbolsCache = map[*Image]*crash.Symbols{}
)

// crashReport prints the crash report for the guest's state — the trap
// frame the kernel saved, or the vCPU's registers when there is none — to
// Stderr and returns ExitCrash.
func (vm *VM) crashReport(tf *boot.TrapFrame, reason string) int {
	r := crash.Report{Reason: reason, Vector: -1, Mem: crash.VirtMemory{Phys: vm.mem, CR3: boot.PML4PA}}
	if regs, err := kvm.GetRegs(vm.vcpu.fd); err == nil {
		r.Regs = crash.Regs{
			RAX: regs.RAX, RBX: regs.RBX, RCX: regs.RCX, RDX: regs.RDX, RSI: regs.RSI, RDI: regs.RDI,
			RSP: regs.RSP, RBP: regs.RBP, R8: regs.R8, R9: regs.R9, R10: regs.R10, R11: regs.R11,
			R12: regs.R12, R13: regs.R13, R14: regs.R14, R15: regs.R15, RIP: regs.RIP, RFLAGS: regs.RFLAGS,
		}
	}
	if s, err := kvm.GetSregs(vm.vcpu.fd); err == nil {
		r.Regs.CS, r.Regs.SS = s.CS.Selector, s.SS.Selector
		r.Regs.FSBase, r.Regs.GSBase, r.Regs.CR2, r.Regs.CR3 = s.FS.Base, s.GS.Base, s.CR2, s.CR3
	}
	if tf == nil {
		// Stopped inside the kernel's trap handler (a timer tick, most
		// likely): what matters is the context it interrupted, which the
		// handler saved at the top of its exception stack.
		if itf := vm.interruptedFrame(r.Regs.RSP); itf != nil {
			tf = itf
			reason += " (in the kernel's interrupt handler; showing the interrupted context)"
			r.Reason = reason
		}
	}
	if tf != nil {
		r.Vector, r.ErrorCode = int(tf.Vector), tf.ErrorCode
		r.Regs.RAX, r.Regs.RBX, r.Regs.RCX, r.Regs.RDX = tf.RAX, tf.RBX, tf.RCX, tf.RDX
		r.Regs.RSI, r.Regs.RDI, r.Regs.RSP, r.Regs.RBP = tf.RSI, tf.RDI, tf.RSP, tf.RBP
		r.Regs.R8, r.Regs.R9, r.Regs.R10, r.Regs.R11 = tf.R8, tf.R9, tf.R10, tf.R11
		r.Regs.R12, r.Regs.R13, r.Regs.R14, r.Regs.R15 = tf.R12, tf.R13, tf.R14, tf.R15
		r.Regs.RIP, r.Regs.RFLAGS = tf.RIP, tf.RFLAGS
		r.Regs.CS, r.Regs.SS = uint16(tf.CS), uint16(tf.SS)
	}
	if tf != nil && r.Reason == reason && tf.Vector >= 32 {
		r.Vector = -1 // an interrupt, not the cause
	}
	symbolsMu.Lock()
	syms, ok := symbolsCache[vm.img]
	if !ok {
		syms, _ = crash.LoadSymbols(vm.img.File)
		symbolsCache[vm.img] = syms
	}
	symbolsMu.Unlock()
	r.Image = syms
	var b bytes.Buffer
	if err := crash.Write(&b, r); err != nil {
		fmt.Fprintf(&b, "vmm: writing the crash report: %v\n", err)
	}
	vm.Stderr().Write(b.Bytes())
	return ExitCrash
}

// interruptedFrame returns the trap frame at the top of the exception
// stack that sp lies on, if it holds a user context.
func (vm *VM) interruptedFrame(sp uint64) *boot.TrapFrame {
	var top uint64
	for _, t := range []uint64{boot.IST1Top, boot.IST3Top, boot.IST2Top} {
		if sp < t && sp >= t-0x8000 && (top == 0 || t < top) {
			top = t
		}
	}
	if top == 0 {
		return nil
	}
	size := uint64(binary.Size(boot.TrapFrame{}))
	b, err := vm.mem.Slice(top-size, size)
	if err != nil {
		return nil
	}
	tf := new(boot.TrapFrame)
	if _, err := binary.Decode(b, binary.LittleEndian, tf); err != nil || tf.CS != boot.SelUserCode {
		return nil
	}
	return tf
}
