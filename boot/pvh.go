package boot

// The PVH boot path (QEMU -kernel, Firecracker, Cloud Hypervisor, and
// `vmm run --boot=pvh`): the loader finds the 32-bit entry through the Xen
// ELF note that `vmm build` adds (NoteNameXen, NoteTypePVH, desc = the
// entry's physical address as a u32) and enters it in 32-bit protected mode
// with paging off and EBX = hvm_start_info. The entry (kernel.pvhEntry,
// kernel/pvh_amd64.s) copies the start info, memory map and command line to
// StartInfoPA (the same layout `vmm` writes), builds exactly the state the
// direct boot's VMM sets (GDT, TSS, page tables, CR0/CR4/EFER/XCR0), and
// IRETQs to the kernel's 64-bit entry at CPL3.

// PVHEntrySym is the ELF symbol of the 32-bit entry (an assembly function,
// hence the .abi0 suffix in the symbol table).
const PVHEntrySym = KernelPkgPath + ".pvhEntry"

// PVH start-info field offsets used by the 32-bit entry.
const (
	StartInfoCmdlineOff = 24
	StartInfoMemmapOff  = 40
	StartInfoEntriesOff = 48
	StartInfoSize       = 56
	MemmapEntrySize     = 24
)

// RAMEnd is the first byte past the RAM the boot page tables map, from a
// PVH memory map: the end of the RAM entry that holds ImageBase, at most
// MaxMemory, rounded down to 2 MiB; 0 if there is none. The 32-bit entry
// applies the same rule in assembly (kernel/pvh_amd64.s), so the kernel
// and the page tables agree.
//
//go:nosplit
func RAMEnd(m []MemmapEntry) uint64 {
	for i := 0; i < len(m); i++ {
		e := &m[i]
		if e.Type != MemmapTypeRAM || e.Addr > ImageBase {
			continue
		}
		end := e.Addr + e.Size
		if end < e.Addr || end > MaxMemory {
			end = MaxMemory
		}
		if end <= ImageBase {
			continue
		}
		return end &^ (HugePageSize - 1)
	}
	return 0
}
