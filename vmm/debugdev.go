package vmm

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// debugDevice is the test device of boot/debugdev.go: a guest write to its
// doorbell signals an eventfd inside KVM (no exit), its goroutine wakes
// and raises its interrupt through an irqfd (no exit either). It measures
// the path every virtio device will take: guest notify -> device
// goroutine -> interrupt -> guest handler.
type debugDevice struct {
	bell   *doorbell
	irq    *Interrupt
	served atomic.Uint32
	stop   atomic.Bool
	wg     sync.WaitGroup
}

// debugDevState is the device's state: its count (the doorbell and the
// interrupt are the VM's wiring, rebuilt on restore).
type debugDevState struct {
	Served uint32
}

// newDebugDevice wires the device to bell and irq and starts its
// goroutine; stop ends it.
func newDebugDevice(bell *doorbell, irq *Interrupt) *debugDevice {
	d := &debugDevice{bell: bell, irq: irq}
	d.wg.Add(1)
	go d.serve()
	return d
}

func (d *debugDevice) serve() {
	defer d.wg.Done()
	for {
		n, err := d.bell.wait()
		if err != nil || d.stop.Load() {
			return
		}
		d.served.Add(uint32(n))
		d.irq.Trigger()
	}
}

// close stops the goroutine (before the VM closes the eventfds).
func (d *debugDevice) close() error {
	d.stop.Store(true)
	d.bell.ring()
	d.wg.Wait()
	return nil
}

func (d *debugDevice) Read(off uint64, data []byte) {
	var v uint32
	switch off {
	case boot.DebugDevID:
		v = boot.DebugDevMagic
	case boot.DebugDevVector:
		v = uint32(d.irq.Vector)
	case boot.DebugDevServed:
		v = d.served.Load()
	default:
		v = ^uint32(0)
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], v)
	copy(data, b[:])
}

// Write sees only doorbell writes KVM did not take (another size than
// 4): they ring the doorbell the slow way, through this exit.
func (d *debugDevice) Write(off uint64, data []byte) {
	if off == boot.DebugDevDoorbell {
		d.bell.ring()
	}
}

func (d *debugDevice) SaveState() any { return debugDevState{Served: d.served.Load()} }

func (d *debugDevice) RestoreState(s any) error {
	st, ok := s.(debugDevState)
	if !ok {
		return errStateType(d, s)
	}
	d.served.Store(st.Served)
	return nil
}

// addDebugDevice builds the debug device and its wiring and maps its
// register page for the guest.
func (vm *VM) addDebugDevice() error {
	bell, err := vm.newDoorbell(boot.DebugDevPA+boot.DebugDevDoorbell, 4, false)
	if err != nil {
		return err
	}
	irq, err := vm.newInterrupt(boot.DebugDevIRQ)
	if err != nil {
		return err
	}
	d := newDebugDevice(bell, irq)
	vm.closers = append(vm.closers, d.close)
	if err := vm.mmioBus.Add("debug", boot.DebugDevPA, boot.DebugDevSize, d); err != nil {
		return err
	}
	if err := mapMMIOPage(vm.mem, boot.DebugDevPA); err != nil {
		return fmt.Errorf("debug device: %w", err)
	}
	return nil
}
