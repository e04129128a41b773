package vmm

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/amberos/amber/boot"
	"github.com/bobuhiro11/gokvm/kvm"
)

// The PVH boot (Config.Boot = "pvh"): the vCPU starts where any PVH loader
// would start it, at the kernel's 32-bit entry named by the image's Xen PVH
// note, in 32-bit protected mode with paging off and EBX = the start info.
// The entry builds the descriptor tables, page tables and control registers
// itself (kernel/pvh_amd64.s). On shadow-paging hosts that code runs at
// CPL0 and so is emulated, thousands of times slower than the direct boot;
// the option exists to test the path every other VMM takes.

// ErrNoPVHNote is wrapped by the errors of PVHEntry.
var ErrNoPVHNote = errors.New("no usable PVH entry note")

// PVHEntry returns the 32-bit entry point from the image's Xen PVH ELF note
// (XEN_ELFNOTE_PHYS32_ENTRY), checked to lie inside a loaded segment.
func (img *Image) PVHEntry() (uint32, error) {
	var found []uint32
	le := binary.LittleEndian
	for _, n := range img.notes { // parsed and checked by ParseImage
		if n.Name != boot.NoteNameXen || n.Type != boot.NoteTypePVH {
			continue
		}
		// The ABI says a 32-bit value; some producers write 64 bits.
		switch len(n.Desc) {
		case 4:
			found = append(found, le.Uint32(n.Desc))
		case 8:
			v := le.Uint64(n.Desc)
			if v > 0xffffffff {
				return 0, fmt.Errorf("%s: corrupt PVH note: entry %#x is above 4 GiB: %w", img.Path, v, ErrNoPVHNote)
			}
			found = append(found, uint32(v))
		default:
			return 0, fmt.Errorf("%s: corrupt PVH note: descriptor of %d bytes, want a 4-byte entry address: %w", img.Path, len(n.Desc), ErrNoPVHNote)
		}
	}
	switch {
	case len(found) == 0:
		return 0, fmt.Errorf("%s has no PVH entry note (Xen ELF note type %d): rebuild it with this vmm's `vmm build`, or boot it directly (--boot=direct): %w",
			img.Path, boot.NoteTypePVH, ErrNoPVHNote)
	case len(found) > 1:
		return 0, fmt.Errorf("%s: corrupt PVH note: %d entry notes: %w", img.Path, len(found), ErrNoPVHNote)
	}
	e := uint64(found[0])
	for _, p := range img.segments {
		if e >= p.Paddr && e < p.Paddr+p.Filesz && p.Flags&elf.PF_X != 0 {
			return found[0], nil
		}
	}
	return 0, fmt.Errorf("%s: corrupt PVH note: entry %#x is not in the image's code: %w", img.Path, e, ErrNoPVHNote)
}

// setupVCPUPVH loads the PVH entry state (Xen's docs/misc/pvh.pandoc):
// 32-bit flat CS/DS/ES/SS, paging off, EBX = start info, IF clear. EFER.SCE
// and the SYSCALL MSRs are set as for the direct boot; the entry keeps SCE
// when it turns long mode on.
func (vm *VM) setupVCPUPVH(entry uint32, lstar, entryLSTAR uint64) error {
	fd := vm.vcpu.fd
	s, err := vm.cpuidAndSregs()
	if err != nil {
		return err
	}
	flat := func(sel uint16, typ uint8) kvm.Segment {
		return kvm.Segment{Limit: 0xffffffff, Selector: sel, Typ: typ, Present: 1, DB: 1, S: 1, G: 1}
	}
	s.CS = flat(boot.SelKernelCode32, 11)
	ds := flat(boot.SelKernelData, 3)
	s.DS, s.ES, s.FS, s.GS, s.SS = ds, ds, ds, ds, ds
	s.TR = kvm.Segment{Limit: 0x67, Typ: 11, Present: 1}
	s.GDT = kvm.Descriptor{}
	s.IDT = kvm.Descriptor{}
	s.CR0, s.CR3, s.CR4 = 0x11, 0, 0 // PE | ET
	s.EFER = 0
	// XCR0 as for the direct boot: the entry leaves it alone when it finds
	// AmberInfo (XSETBV cannot be emulated at CPL0 on shadow-paging hosts).
	if err := loadControlState(fd, s, lstar, entryLSTAR); err != nil {
		return err
	}
	regs := &kvm.Regs{RIP: uint64(entry), RBX: boot.StartInfoPA, RFLAGS: 0x2}
	if err := kvm.SetRegs(fd, regs); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}
