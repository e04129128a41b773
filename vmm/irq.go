package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Device interrupts. The VM has the split irqchip: an in-kernel LAPIC and
// no IOAPIC or PIC, so a device raises an MSI. Each interrupt is a GSI
// routed to an MSI for the LAPIC (KVM_SET_GSI_ROUTING) and an eventfd
// bound to that GSI (KVM_IRQFD): a device goroutine signals the eventfd
// and KVM injects the vector, kicking the vCPU out of guest mode if it is
// running, without the vCPU thread or an exit to this process. The other
// choice, a userspace IOAPIC, costs an exit per EOI (the LAPIC forwards
// level-triggered EOIs to userspace with the split irqchip) and a
// KVM_SIGNAL_MSI from the device thread anyway.

// msiRoutes is the VM's GSI routing table: KVM_SET_GSI_ROUTING replaces
// the whole table, so it is kept here.
type msiRoutes struct {
	vmFd   uintptr
	routes []irqRoutingEntry
}

// Interrupt is a device's interrupt line: Trigger raises its vector in the
// guest.
type Interrupt struct {
	Vector uint8
	GSI    uint32
	fd     int
	wake   func() // ends an idle wait in the VMM (the vCPU is not in KVM_RUN)
}

// newInterrupt routes a new GSI to vector and binds an eventfd to it.
func (vm *VM) newInterrupt(vector uint8) (*Interrupt, error) {
	if vector < 32 || vector == 0xff {
		return nil, fmt.Errorf("interrupt vector %#x is reserved (exceptions below 32, spurious 0xff)", vector)
	}
	r := &vm.irqs
	gsi := uint32(len(r.routes))
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	routes := append(r.routes[:len(r.routes):len(r.routes)], msiRoute(gsi, vector))
	if err := setGSIRouting(r.vmFd, routes); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("KVM_SET_GSI_ROUTING: %w", err)
	}
	r.routes = routes
	if err := setIRQFD(r.vmFd, fd, gsi, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("KVM_IRQFD: %w", err)
	}
	irq := &Interrupt{Vector: vector, GSI: gsi, fd: fd, wake: vm.input.wakeIdle}
	vm.closers = append(vm.closers, func() error {
		return errors.Join(setIRQFD(r.vmFd, fd, gsi, true), unix.Close(fd))
	})
	return irq, nil
}

// Trigger raises the interrupt. It may be called from any goroutine.
func (i *Interrupt) Trigger() error {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	_, err := unix.Write(i.fd, one[:])
	if err == unix.EAGAIN {
		err = nil // the counter is saturated: the interrupt is pending anyway
	}
	// A vCPU idling in the VMM (HCIdle) is outside KVM_RUN and would see
	// the interrupt only at its deadline.
	i.wake()
	return err
}

// doorbell is an eventfd KVM signals when the guest writes to a device
// register (KVM_IOEVENTFD): the write costs the guest no exit to this
// process, and the device's goroutine waits on the eventfd.
type doorbell struct {
	fd int
}

// newDoorbell makes a guest write of length bytes at addr (a port with
// pio) signal a new eventfd.
func (vm *VM) newDoorbell(addr uint64, length uint32, pio bool) (*doorbell, error) {
	return vm.newDoorbellMatch(addr, length, pio, -1)
}

// newDoorbellMatch is newDoorbell for writes of the value match only
// (match < 0: any).
func (vm *VM) newDoorbellMatch(addr uint64, length uint32, pio bool, match int64) (*doorbell, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := setIOEventFDMatch(vm.vmFd, fd, addr, length, pio, false, match); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("KVM_IOEVENTFD at %#x: %w", addr, err)
	}
	vm.closers = append(vm.closers, func() error {
		return errors.Join(setIOEventFDMatch(vm.vmFd, fd, addr, length, pio, true, match), unix.Close(fd))
	})
	return &doorbell{fd: fd}, nil
}

// wait blocks until the doorbell rang and returns how many times it did
// since the last wait.
func (d *doorbell) wait() (uint64, error) {
	var b [8]byte
	for {
		_, err := unix.Read(d.fd, b[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
}

// ring signals the doorbell from the host side (to wake its waiter).
func (d *doorbell) ring() {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(d.fd, one[:])
}
