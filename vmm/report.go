package vmm

import (
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
	if regs, err := kvm.GetRegs(vm.vcpuFd); err == nil {
		r.Regs = crash.Regs{
			RAX: regs.RAX, RBX: regs.RBX, RCX: regs.RCX, RDX: regs.RDX, RSI: regs.RSI, RDI: regs.RDI,
			RSP: regs.RSP, RBP: regs.RBP, R8: regs.R8, R9: regs.R9, R10: regs.R10, R11: regs.R11,
			R12: regs.R12, R13: regs.R13, R14: regs.R14, R15: regs.R15, RIP: regs.RIP, RFLAGS: regs.RFLAGS,
		}
	}
	if s, err := kvm.GetSregs(vm.vcpuFd); err == nil {
		r.Regs.CS, r.Regs.SS = s.CS.Selector, s.SS.Selector
		r.Regs.FSBase, r.Regs.GSBase, r.Regs.CR2, r.Regs.CR3 = s.FS.Base, s.GS.Base, s.CR2, s.CR3
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
	symbolsMu.Lock()
	syms, ok := symbolsCache[vm.img]
	if !ok {
		syms, _ = crash.LoadSymbols(vm.img.File)
		symbolsCache[vm.img] = syms
	}
	symbolsMu.Unlock()
	r.Image = syms
	if err := crash.Write(vm.cfg.Stderr, r); err != nil {
		fmt.Fprintf(vm.cfg.Stderr, "vmm: writing the crash report: %v\n", err)
	}
	return ExitCrash
}
