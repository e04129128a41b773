package vmm

import (
	"errors"
	"fmt"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Prepared is a VM made ahead of a restore: what Restore needs that does
// not depend on the snapshot's contents, only on its memory size. That
// is the KVM VM, fresh anonymous guest memory registered as its slot,
// the split irqchip and the vCPU. On a KVM host these are most of what
// a restore costs (KVM_CREATE_VM, the vCPU, and a slot whose registration
// grows with the memory's size: docs/benchmarks.md), so a program that
// keeps a few Prepared VMs of the sizes it restores (a pool) restores
// in the time the snapshot's own state takes: mapping its memory, loading
// the devices and the vCPU.
//
// Restore makes one itself when RestoreConfig.Prepared is nil, in a
// goroutine beside reading the snapshot's state, once the size is known.
//
// A Prepared VM is used by at most one Restore; one never used is
// released by Close. KVM ties a VM to the process that created it: it
// cannot be handed to another process.
type Prepared struct {
	kvmFd, vmFd uintptr
	mem         *GuestMemory
	vcpu        *VCPU
	tscHz       uint64
	phases      []Phase
}

// Prepare creates a VM with memBytes of guest memory (a multiple of
// 2 MiB) for a later Restore of a snapshot of that size.
func Prepare(memBytes uint64) (_ *Prepared, err error) {
	return prepare(memBytes, time.Now())
}

func prepare(memBytes uint64, start time.Time) (_ *Prepared, err error) {
	if memBytes == 0 || memBytes%(2<<20) != 0 {
		return nil, fmt.Errorf("guest memory of %d bytes: not a positive multiple of 2 MiB", memBytes)
	}
	p := &Prepared{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	clock := &phaseClock{start: start, last: start}
	if p.kvmFd, err = openKVM(); err != nil {
		return nil, err
	}
	if p.vmFd, err = kvm.CreateVM(p.kvmFd); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	clock.mark("create VM")
	if p.mem, err = newGuestMemory(memBytes); err != nil {
		return nil, err
	}
	// No dirty log (vmm/restoredirty.go). The snapshot's extents are
	// mapped over this memory later (MAP_FIXED): KVM follows the
	// mapping's change through its MMU notifier, and nothing has run.
	if err = setMemorySlot(p.vmFd, p.mem, 0); err != nil {
		return nil, err
	}
	clock.mark("memory slot")
	if p.vcpu, p.tscHz, err = irqchipAndVCPU(p.kvmFd, p.vmFd); err != nil {
		return nil, err
	}
	clock.mark("irqchip, vCPU")
	p.phases = clock.phases
	return p, nil
}

// irqchipAndVCPU gives the VM its split irqchip and its vCPU, and says
// the vCPU's TSC frequency in Hz. The split irqchip is an in-kernel
// local APIC (its timer drives preemption; device MSIs reach it through
// irqfd) without an exit to this process per interrupt; it leaves out
// the in-kernel PIC, IOAPIC and PIT the guest does not use, whose
// teardown alone cost ~12 ms per VM on the development host (0.5 ms
// without them).
func irqchipAndVCPU(kvmFd, vmFd uintptr) (*VCPU, uint64, error) {
	if err := enableSplitIRQChip(vmFd); err != nil {
		return nil, 0, fmt.Errorf("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): %w", err)
	}
	c, err := newVCPU(kvmFd, vmFd, 0)
	if err != nil {
		return nil, 0, err
	}
	khz, err := kvm.GetTSCKHz(c.fd)
	if err != nil || khz == 0 {
		c.close()
		return nil, 0, fmt.Errorf("KVM_GET_TSC_KHZ: %v", err)
	}
	return c, khz * 1000, nil
}

// Memory is the guest memory size p was prepared for; 0 once a Restore
// took it or it was closed.
func (p *Prepared) Memory() uint64 {
	if p.mem == nil {
		return 0
	}
	return p.mem.Size()
}

// Close releases a Prepared VM that no Restore took.
func (p *Prepared) Close() error {
	var errs []error
	if p.vcpu != nil {
		errs = append(errs, p.vcpu.close())
		p.vcpu = nil
	}
	for _, fd := range []*uintptr{&p.vmFd, &p.kvmFd} {
		if *fd != 0 {
			errs = append(errs, unix.Close(int(*fd)))
			*fd = 0
		}
	}
	if p.mem != nil {
		errs = append(errs, p.mem.close())
		p.mem = nil
	}
	return errors.Join(errs...)
}

// take moves p's resources into vm; p is empty after.
func (p *Prepared) take(vm *VM) {
	vm.kvmFd, vm.vmFd, vm.mem, vm.vcpu, vm.tscHz = p.kvmFd, p.vmFd, p.mem, p.vcpu, p.tscHz
	vm.irqs.vmFd = p.vmFd
	p.kvmFd, p.vmFd, p.mem, p.vcpu = 0, 0, nil, nil
}

// preparing is a Prepared VM being made in the background.
type preparing struct {
	done chan struct{}
	p    *Prepared
	err  error
}

func prepareAsync(memBytes uint64) *preparing {
	w := &preparing{done: make(chan struct{})}
	start := time.Now()
	go func() {
		w.p, w.err = prepare(memBytes, start)
		close(w.done)
	}()
	return w
}

// wait returns the VM once made.
func (w *preparing) wait() (*Prepared, error) {
	<-w.done
	return w.p, w.err
}

// discard releases the VM when it is made: for a restore that failed
// before it needed it.
func (w *preparing) discard() {
	go func() {
		if p, err := w.wait(); err == nil {
			p.Close()
		}
	}()
}
