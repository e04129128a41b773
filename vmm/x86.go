package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/amberos/amber/boot"
	"github.com/bobuhiro11/gokvm/kvm"
)

// The direct boot: everything that needs CPL0 (descriptor tables, control
// registers, MSRs, XCR0) is set here, before the first instruction, and the
// vCPU starts at the kernel's 64-bit entry at CPL3. On shadow-paging hosts
// CPL0 code is emulated thousands of times slower, so no guest code ever
// runs at CPL0 on this path. Values: docs/kernel.md, "Measured here".

// writeTables writes the GDT, TSS and boot page tables into fresh (all
// zero) guest memory.
// The kernel fills the IDT's gates itself (it knows its stubs' addresses).
func writeTables(m *GuestMemory) error {
	le := binary.LittleEndian
	gdt, err := m.Slice(boot.GDTPA, boot.GDTEntries*8)
	if err != nil {
		return err
	}
	descs := map[int]uint64{
		boot.SelKernelCode32 >> 3: 0x00cf9a000000ffff,
		boot.SelKernelCode >> 3:   0x00af9a000000ffff,
		boot.SelKernelData >> 3:   0x00cf92000000ffff,
		boot.SelUserCode32 >> 3:   0x00cffa000000ffff,
		boot.SelUserData >> 3:     0x00cff2000000ffff,
		boot.SelUserCode >> 3:     0x00affa000000ffff,
	}
	for i, d := range descs {
		le.PutUint64(gdt[i*8:], d)
	}
	tb, tl := uint64(boot.TSSPA), uint64(boot.TSSLimit)
	ti := boot.SelTSS >> 3
	le.PutUint64(gdt[ti*8:], tl&0xffff|(tb&0xffffff)<<16|0x89<<40|(tl>>16&0xf)<<48|(tb>>24&0xff)<<56)
	le.PutUint64(gdt[ti*8+8:], tb>>32)

	tss, err := m.Slice(boot.TSSPA, boot.TSSLimit+1)
	if err != nil {
		return err
	}
	le.PutUint64(tss[4:], boot.IST1Top)    // RSP0
	le.PutUint64(tss[0x24:], boot.IST1Top) // IST1
	le.PutUint64(tss[0x2c:], boot.IST2Top) // IST2
	le.PutUint16(tss[0x66:], boot.TSSIOMapBase)
	tss[boot.TSSLimit] = 0xff // the I/O bitmap (all ports allowed) ends with 0xff

	// Page tables: RAM identity-mapped, user-accessible; 4 KiB pages for
	// the low 2 MiB so [0, NullGuard) can stay unmapped, 2 MiB pages above.
	const p, w, u, ps = 1, 2, 4, 0x80
	ram := m.Size()
	gib := (ram + 1<<30 - 1) >> 30
	if gib > boot.MaxBootPDs {
		return fmt.Errorf("guest memory of %d MiB needs more boot page directories than fit", ram>>20)
	}
	tables, err := m.Slice(boot.PML4PA, boot.FirstPDPA+boot.MaxBootPDs*0x1000-boot.PML4PA)
	if err != nil {
		return err
	}
	le.PutUint64(tables[0:], boot.PDPTPA|p|w|u)
	for g := uint64(0); g < gib; g++ {
		pd := boot.FirstPDPA + g*0x1000
		le.PutUint64(tables[boot.PDPTPA-boot.PML4PA+g*8:], pd|p|w|u)
		for i := uint64(0); i < 512; i++ {
			pa := g<<30 | i<<21
			if pa >= ram {
				break
			}
			e := pa | p | w | u | ps
			if pa == 0 {
				e = boot.LowPTPA | p | w | u
			}
			le.PutUint64(tables[pd-boot.PML4PA+i*8:], e)
		}
	}
	for a := uint64(boot.NullGuard); a < boot.LowIdentity; a += boot.PageSize {
		le.PutUint64(tables[boot.LowPTPA-boot.PML4PA+(a>>12)*8:], a|p|w|u)
	}
	return nil
}

func userSegment(sel uint16, code bool) kvm.Segment {
	s := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: sel, Present: 1, DPL: 3, S: 1, G: 1}
	if code {
		s.Typ, s.L = 11, 1
	} else {
		s.Typ, s.DB = 3, 1
	}
	return s
}

// MSR numbers.
const (
	msrTSC    = 0x10
	msrSTAR   = 0xc0000081
	msrLSTAR  = 0xc0000082
	msrSFMASK = 0xc0000084
)

// setupVCPU loads the boot register state: long mode at CPL3, IF set for
// good, IOPL 3, RIP at the kernel entry, RBX at the start info.
func (vm *VM) setupVCPU(entry, lstar, entryLSTAR uint64) error {
	fd := vm.vcpu.fd
	s, err := vm.cpuidAndSregs()
	if err != nil {
		return err
	}
	s.CS = userSegment(boot.SelUserCode, true)
	ds := userSegment(boot.SelUserData, false)
	s.DS, s.ES, s.FS, s.GS, s.SS = ds, ds, ds, ds, ds
	s.TR = kvm.Segment{Base: boot.TSSPA, Limit: boot.TSSLimit, Selector: boot.SelTSS, Typ: 11, Present: 1}
	s.GDT = kvm.Descriptor{Base: boot.GDTPA, Limit: boot.GDTEntries*8 - 1}
	s.IDT = kvm.Descriptor{Base: boot.IDTPA, Limit: 256*16 - 1}
	s.CR0, s.CR3, s.CR4 = boot.CR0, boot.PML4PA, boot.CR4
	s.EFER = boot.EFER
	if err := loadControlState(fd, s, lstar, entryLSTAR); err != nil {
		return err
	}
	regs := &kvm.Regs{RIP: entry, RSP: boot.BootStackTop, RBX: boot.StartInfoPA, RFLAGS: boot.EntryRFLAGS}
	if err := kvm.SetRegs(fd, regs); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// cpuidAndSregs gives the vCPU the host's supported CPUID and returns its
// special registers, for a boot path to fill in.
func (vm *VM) cpuidAndSregs() (*kvm.Sregs, error) {
	cpuid := &kvm.CPUID{Nent: 100, Entries: make([]kvm.CPUIDEntry2, 100)}
	if err := kvm.GetSupportedCPUID(vm.kvmFd, cpuid); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	if err := kvm.SetCPUID2(vm.vcpu.fd, cpuid); err != nil {
		return nil, fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}
	s, err := kvm.GetSregs(vm.vcpu.fd)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	return s, nil
}

// loadControlState loads the special registers (EFER.SCE added when
// SYSCALL should land at LSTAR), XCR0, and the SYSCALL MSRs. LSTAR is
// programmed whatever the mode: kvm_pvm ignores EFER.SCE and always
// delivers SYSCALL to LSTAR (at CPL3), measured.
func loadControlState(fd uintptr, s *kvm.Sregs, lstar, entryLSTAR uint64) error {
	if lstar != 0 {
		s.EFER |= boot.EFERSCE
	}
	if err := kvm.SetSregs(fd, s); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	xcrs := &kvm.XCRS{NrXRCS: 1}
	xcrs.Registers[0] = kvm.XRC{XRC: 0, Value: boot.XCR0}
	if err := kvm.SetXCRS(fd, xcrs); err != nil {
		return fmt.Errorf("KVM_SET_XCRS: %w", err)
	}
	if entryLSTAR == 0 {
		return nil
	}
	msrs := &kvm.MSRS{NMSRs: 3, Entries: []kvm.MSREntry{
		{Index: msrSTAR, Data: uint64(boot.SelUserCode32)<<48 | uint64(boot.SelKernelCode)<<32},
		{Index: msrLSTAR, Data: entryLSTAR},
		{Index: msrSFMASK, Data: 0},
	}}
	if err := kvm.SetMSRs(fd, msrs); err != nil {
		return fmt.Errorf("KVM_SET_MSRS: %w", err)
	}
	return nil
}

// guestTSC reads the vCPU's time-stamp counter.
func (vm *VM) guestTSC() (uint64, error) {
	msrs := &kvm.MSRS{NMSRs: 1, Entries: []kvm.MSREntry{{Index: msrTSC}}}
	if err := kvm.GetMSRs(vm.vcpu.fd, msrs); err != nil {
		return 0, fmt.Errorf("reading the guest TSC: %w", err)
	}
	return msrs.Entries[0].Data, nil
}

// mapMMIOPage maps the 2 MiB page holding the device window at pa (above
// RAM, below 4 GiB) in the boot page tables: identity, user-accessible,
// uncached. Guest code then reaches the device with plain loads and
// stores; the address has no memory slot, so each access is an MMIO exit
// (or an ioeventfd) in KVM.
func mapMMIOPage(m *GuestMemory, pa uint64) error {
	const p, w, u, pwt, pcd, ps = 1, 2, 4, 8, 0x10, 0x80
	g := pa >> 30
	if pa < m.Size() || g >= boot.MaxBootPDs {
		return fmt.Errorf("MMIO window %#x is not between RAM's end (%#x) and the boot page tables' reach", pa, m.Size())
	}
	tables, err := m.Slice(boot.PML4PA, boot.FirstPDPA+boot.MaxBootPDs*0x1000-boot.PML4PA)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	pd := boot.FirstPDPA + g*0x1000
	le.PutUint64(tables[boot.PDPTPA-boot.PML4PA+g*8:], pd|p|w|u)
	le.PutUint64(tables[pd-boot.PML4PA+(pa>>21&511)*8:], pa&^(1<<21-1)|p|w|u|pwt|pcd|ps)
	return nil
}
