package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its KVM descriptor, the run area KVM shares
// with this process, and the exit loop that serves it. The loop runs on
// one OS thread (KVM_RUN must always come from the same thread for the
// kick to reach it); everything else may be called from any goroutine
// while the vCPU is not running.
type VCPU struct {
	ID     int
	fd     uintptr
	runMap []byte
	run    *kvm.RunData
	tid    atomic.Int32      // the thread in the loop, for kicks; 0 outside
	enter  func() unix.Errno // KVM_RUN (tests replace it)
	exits  [64]int           // KVM exit reasons
	// firstExit is when KVM_RUN first returned with an exit (Unix ns; 0:
	// not yet): restore's "guest running again" (RestorePhases).
	firstExit atomic.Int64
}

// newVCPU creates vCPU id of the VM and maps its run area.
func newVCPU(kvmFd, vmFd uintptr, id int) (_ *VCPU, err error) {
	c := &VCPU{ID: id}
	if c.fd, err = kvm.CreateVCPU(vmFd, id); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	size, err := kvm.GetVCPUMMmapSize(kvmFd)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if c.runMap, err = unix.Mmap(int(c.fd), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		c.close()
		return nil, fmt.Errorf("mapping the vCPU run area: %w", err)
	}
	c.run = (*kvm.RunData)(unsafe.Pointer(&c.runMap[0]))
	return c, nil
}

func (c *VCPU) close() error {
	var errs []error
	if c.runMap != nil {
		errs = append(errs, unix.Munmap(c.runMap))
		c.runMap, c.run = nil, nil
	}
	if c.fd != 0 {
		errs = append(errs, unix.Close(int(c.fd)))
		c.fd = 0
	}
	return errors.Join(errs...)
}

// Regs returns the general registers.
func (c *VCPU) Regs() (*kvm.Regs, error) {
	r, err := kvm.GetRegs(c.fd)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_REGS: %w", err)
	}
	return r, nil
}

// SetRegs loads the general registers.
func (c *VCPU) SetRegs(r *kvm.Regs) error {
	if err := kvm.SetRegs(c.fd, r); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// Sregs returns the special registers (segments, control registers, EFER).
func (c *VCPU) Sregs() (*kvm.Sregs, error) {
	s, err := kvm.GetSregs(c.fd)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	return s, nil
}

// SetSregs loads the special registers.
func (c *VCPU) SetSregs(s *kvm.Sregs) error {
	if err := kvm.SetSregs(c.fd, s); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	return nil
}

// stateMSRs are the MSRs a vCPU's state carries: those the boot sets or
// the kernel writes (FS base per thread), and the TSC deadline and APIC
// base the LAPIC needs.
var stateMSRs = []uint32{
	msrTSC, msrSTAR, msrLSTAR, msrSFMASK,
	0xc0000080, // EFER (also in Sregs; KVM wants both consistent)
	0xc0000100, // FS base
	0xc0000101, // GS base
	0xc0000102, // kernel GS base
	0x1b,       // APIC base
	0x6e0,      // TSC deadline
}

// VCPUState is everything KVM holds for a vCPU, as plain values: what a
// snapshot saves and a restore loads into a fresh vCPU of a VM with the
// same memory and devices.
type VCPUState struct {
	Regs    kvm.Regs
	Sregs   kvm.Sregs
	MSRs    []kvm.MSREntry
	XSave   XSave
	XCRS    XCRS
	LAPIC   LAPIC
	MPState MPState
	Events  VCPUEvents
}

// SaveState reads the vCPU's state. The vCPU must not be running.
func (c *VCPU) SaveState() (*VCPUState, error) {
	s := new(VCPUState)
	r, err := c.Regs()
	if err != nil {
		return nil, err
	}
	s.Regs = *r
	sr, err := c.Sregs()
	if err != nil {
		return nil, err
	}
	s.Sregs = *sr
	msrs := &kvm.MSRS{NMSRs: uint32(len(stateMSRs))}
	for _, i := range stateMSRs {
		msrs.Entries = append(msrs.Entries, kvm.MSREntry{Index: i})
	}
	if err := kvm.GetMSRs(c.fd, msrs); err != nil {
		return nil, fmt.Errorf("KVM_GET_MSRS: %w", err)
	}
	s.MSRs = msrs.Entries
	steps := []struct {
		name string
		f    func() error
	}{
		{"KVM_GET_XSAVE", func() error { return getXSave(c.fd, &s.XSave) }},
		{"KVM_GET_XCRS", func() error { return getXCRS(c.fd, &s.XCRS) }},
		{"KVM_GET_LAPIC", func() error { return getLAPIC(c.fd, &s.LAPIC) }},
		{"KVM_GET_MP_STATE", func() error { return getMPState(c.fd, &s.MPState) }},
		{"KVM_GET_VCPU_EVENTS", func() error { return getVCPUEvents(c.fd, &s.Events) }},
	}
	for _, st := range steps {
		if err := st.f(); err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return s, nil
}

// RestoreState loads a saved state, in the order Firecracker's
// restore_state keeps for KVM's sake: SET_SREGS restores the APIC base,
// so it comes before SET_LAPIC; the TSC deadline MSR only loads into a
// configured LAPIC, so SET_LAPIC comes before SET_MSRS; SET_REGS clears
// pending exceptions, so SET_VCPU_EVENTS comes last.
func (c *VCPU) RestoreState(s *VCPUState) error {
	if err := c.SetSregs(&s.Sregs); err != nil {
		return err
	}
	if err := c.SetRegs(&s.Regs); err != nil {
		return err
	}
	x, xcrs, lapic, mp, ev := s.XSave, s.XCRS, s.LAPIC, s.MPState, s.Events
	steps := []struct {
		name string
		f    func() error
	}{
		{"KVM_SET_XSAVE", func() error { return setXSave(c.fd, &x) }},
		{"KVM_SET_XCRS", func() error { return setXCRS(c.fd, &xcrs) }},
		{"KVM_SET_LAPIC", func() error { return setLAPIC(c.fd, &lapic) }},
		{"KVM_SET_MSRS", func() error {
			return kvm.SetMSRs(c.fd, &kvm.MSRS{NMSRs: uint32(len(s.MSRs)), Entries: append([]kvm.MSREntry(nil), s.MSRs...)})
		}},
		{"KVM_SET_MP_STATE", func() error { return setMPState(c.fd, &mp) }},
		{"KVM_SET_VCPU_EVENTS", func() error { return setVCPUEvents(c.fd, &ev) }},
	}
	for _, st := range steps {
		if err := st.f(); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return nil
}

// exitHandler is what a vCPU's loop needs from its VM.
type exitHandler interface {
	// stopping is checked before every entry: a reason to end instead.
	stopping() (status int, stop bool)
	// ended is checked after every exit served: the guest has finished.
	ended() (status int, done bool)
	pio(port uint16, out bool, size int, data []byte)
	mmio(addr uint64, out bool, data []byte)
	// fail ends the run with a crash report for an exit the guest cannot
	// continue from.
	fail(reason string) int
}

// loop runs the vCPU and serves its exits until the guest ends or h says
// to stop. Each exit is served exactly once: when KVM_RUN fails with EINTR
// or EAGAIN (immediate_exit, or a signal that arrived before the guest
// ran) KVM has written no exit reason, and the one in the run area is the
// exit served last time.
func (c *VCPU) loop(h exitHandler) (status int, err error) {
	c.tid.Store(int32(unix.Gettid()))
	defer c.tid.Store(0)
	enter := c.enter
	if enter == nil {
		enter = func() unix.Errno { return kvmRun(c.fd) }
	}
	first := c.firstExit.Load() == 0
	for {
		// Clear immediate_exit before looking at the requests: a kick
		// after this point either is seen below or makes KVM_RUN return
		// at once.
		c.run.ImmediateExit = 0
		if status, stop := h.stopping(); stop {
			return status, nil
		}
		switch errno := enter(); errno {
		case 0:
			if first {
				first = false
				c.firstExit.Store(time.Now().UnixNano())
			}
		case unix.EINTR, unix.EAGAIN:
			c.exits[kvm.EXITINTR]++
			continue
		default:
			return 0, fmt.Errorf("KVM_RUN: %w", errno)
		}
		if r := c.run.ExitReason; r < uint32(len(c.exits)) {
			c.exits[r]++
		}
		switch kvm.ExitType(c.run.ExitReason) {
		case kvm.EXITIO:
			port, out, size, data := c.ioData()
			h.pio(port, out, size, data)
		case kvm.EXITMMIO:
			addr, out, data := c.mmioData()
			h.mmio(addr, out, data)
		case kvm.EXITINTR:
			// A signal (a kick or the Go runtime's preemption): loop.
		case kvm.EXITHLT:
			return h.fail("guest executed HLT"), nil
		case kvm.EXITSHUTDOWN:
			return h.fail("guest triple fault (an exception while delivering an exception)"), nil
		case kvm.EXITINTERNALERROR:
			return h.fail(fmt.Sprintf("KVM internal error (suberror %d): the instruction could not be emulated", c.run.Data[0]&0xffffffff)), nil
		case kvm.EXITFAILENTRY:
			return h.fail(fmt.Sprintf("KVM entry failure (hardware reason %#x)", c.run.Data[0])), nil
		default:
			return h.fail(fmt.Sprintf("unexpected KVM exit %v", kvm.ExitType(c.run.ExitReason))), nil
		}
		if status, done := h.ended(); done {
			return status, nil
		}
	}
}

// ioData decodes the current port-I/O exit: the data bytes (size x count)
// live in the run area at the offset KVM gives.
func (c *VCPU) ioData() (port uint16, out bool, size int, data []byte) {
	direction, sz, p, count, offset := c.run.IO()
	n := sz * count
	if offset > uint64(len(c.runMap)) || n > uint64(len(c.runMap))-offset {
		return uint16(p), direction == 1, int(sz), nil
	}
	return uint16(p), direction == 1, int(sz), c.runMap[offset : offset+n]
}

// mmioData decodes the current MMIO exit (struct kvm_run's mmio member:
// phys_addr, data[8], len, is_write). A read is answered by filling data,
// which KVM copies to the guest on the next entry.
func (c *VCPU) mmioData() (addr uint64, out bool, data []byte) {
	d := c.mmioBytes()
	addr = binary.LittleEndian.Uint64(d[0:])
	n := min(binary.LittleEndian.Uint32(d[16:]), 8)
	return addr, d[20] != 0, d[8 : 8+n]
}

// kick makes KVM_RUN return soon: immediate_exit covers the case where the
// vCPU thread is about to enter it, the signal the case where it is inside.
func (c *VCPU) kick() {
	if c.run == nil {
		return
	}
	c.run.ImmediateExit = 1
	if tid := c.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// mmioBytes is the run area's mmio member.
func (c *VCPU) mmioBytes() *[24]byte {
	return (*[24]byte)(unsafe.Pointer(&c.run.Data[0]))
}
