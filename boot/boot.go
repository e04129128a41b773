// Package boot is the contract between the VMM and the guest kernel: the
// guest-physical layout of a freshly booted Amber VM, the boot information
// handed to the kernel (built on PVH's hvm_start_info so every PVH loader
// can provide it), the command-line conventions, and the hypercall ABI.
//
// Both sides import it; it imports nothing of ours. Everything the guest
// uses from here must be usable from code that runs before the Go runtime
// (constants and fixed-layout structs, no allocation).
package boot

// Guest-physical layout at boot. The low 2 MiB hold the structures the CPU
// and the kernel need before the image runs; the image is linked so its
// first page (the ELF header) lands at ImageBase. All of guest RAM is
// identity-mapped (VA == PA) except the first NullGuard bytes, which stay
// unmapped so nil-pointer dereferences fault as the Go runtime expects.
const (
	NullGuard    = 0x10000 // [0, 64 KiB) is never mapped, as on Linux (vm.mmap_min_addr)
	StartInfoPA  = 0x10000 // hvm_start_info, then Amber's extension, memory map and command line
	StartInfoMax = 0x10000 // bytes reserved for StartInfoPA..
	GDTPA        = 0x20000
	IDTPA        = 0x21000
	TSSPA        = 0x22000 // 104-byte TSS + 8 KiB I/O bitmap + 0xff: TSSLimit+1 bytes
	PML4PA       = 0x30000 // boot page tables: PML4, PDPT, the page table of the low 2 MiB, PDs
	PDPTPA       = 0x31000
	LowPTPA      = 0x32000 // 4 KiB page table for [0, 2 MiB)
	FirstPDPA    = 0x33000 // one page directory per GiB of RAM
	MaxBootPDs   = 13      // up to 0x40000
	ISTPA        = 0x40000 // [0x40000, 0x60000): exception stacks
	IST1Top      = 0x50000 // exceptions
	IST3Top      = 0x58000 // once the interrupts'; unused by any gate now (kernel/irq.go)
	IST2Top      = 0x60000 // double fault / NMI / machine check
	StackBottom  = 0x80000 // [0x80000, StackTop): the main thread's initial stack
	StackTop     = 0x1ff000
	BootStackTop = 0x80000  // [0x60000, 0x80000): the stack kinit runs on
	ImageBase    = 0x200000 // ELF header page; text starts at TextBase
	TextBase     = ImageBase + 0x1000
	LowIdentity  = 0x200000 // the low identity range mapped with 4 KiB pages
	MaxMemory    = 3 << 30  // RAM stays below the 32-bit MMIO hole
	MinMemory    = 16 << 20
	PageSize     = 4096
	HugePageSize = 2 << 20
	// KernelStackSize is each kernel thread's stack; the kernel takes
	// them from the top of RAM down, thread slot 0's first (kernel/sched.go).
	KernelStackSize = 32 << 10
)

// Segment selectors: Linux's layout, so that a CPL3 guest runs on the same
// selector values as a host process (on shadow-paging KVM any other layout
// makes every IRETQ trap; docs/kernel.md, "Measured here").
const (
	SelKernelCode32 = 0x08
	SelKernelCode   = 0x10
	SelKernelData   = 0x18
	SelUserCode32   = 0x23
	SelUserData     = 0x2b
	SelUserCode     = 0x33
	SelTSS          = 0x40
	GDTEntries      = 10 // 8 descriptors + the 16-byte TSS descriptor
	TSSLimit        = 0x2068
	TSSIOMapBase    = 0x68
)

// Initial register state of the 64-bit kernel entry (both boot paths).
const (
	// RFLAGS: IF set once and for all (the guest cannot change it at CPL3),
	// IOPL 3 so port I/O works at CPL3, bit 1 reserved-one.
	EntryRFLAGS = 0x3202
	CR0         = 0x80050033 // PG | AM | WP | NE | ET | MP | PE
	CR4         = 0x50620    // PAE | OSFXSR | OSXMMEXCPT | FSGSBASE | OSXSAVE
	EFER        = 0x500      // LME | LMA (SCE added when SYSCALL should reach LSTAR)
	EFERSCE     = 0x1
	XCR0        = 0x7 // x87 | SSE | AVX
)

// PVH start-info constants (xen/include/public/arch-x86/hvm/start_info.h).
const (
	StartInfoMagic   = 0x336ec578
	MemmapTypeRAM    = 1
	MemmapTypeReserv = 2
)

// StartInfo is struct hvm_start_info, version 1.
type StartInfo struct {
	Magic         uint32
	Version       uint32
	Flags         uint32
	NrModules     uint32
	ModlistPaddr  uint64
	CmdlinePaddr  uint64
	RsdpPaddr     uint64
	MemmapPaddr   uint64
	MemmapEntries uint32
	Reserved      uint32
}

// MemmapEntry is struct hvm_memmap_table_entry.
type MemmapEntry struct {
	Addr     uint64
	Size     uint64
	Type     uint32
	Reserved uint32
}

// AmberInfoMagic marks the Amber extension that the VMM places right after
// StartInfo (at StartInfoPA+AmberInfoOffset). Other PVH loaders do not
// write it; the kernel then falls back to portable mechanisms.
const (
	AmberInfoMagic   = 0x616d6265_72000001 // "amber", version 1
	AmberInfoOffset  = 0x40
	MemmapOffset     = 0x100
	MaxMemmapEntries = 16
	CmdlineOffset    = 0x400
	MaxCmdline       = StartInfoMax - CmdlineOffset
)

// AmberInfo is what only Amber's VMM provides.
type AmberInfo struct {
	Magic      uint64
	ABIVersion uint64
	Flags      uint64 // AmberFlag*
	TSCHz      uint64 // guest TSC frequency
	BootTSC    uint64 // guest TSC when the vCPU was first started
	BootUnixNs uint64 // host CLOCK_REALTIME at BootTSC
	PML4       uint64 // physical address of the page-table root (CR3 is unreadable at CPL3)
	RAMEnd     uint64 // first byte past guest RAM
	Seed       [4]uint64
	// HostSignals is a bit set (bit n-1 for signal n) the VMM sets and the
	// kernel takes atomically: signals for the guest process, such as
	// SIGINT on Ctrl-C. The kernel checks it on timer ticks and after idle.
	HostSignals uint64
	// Restores counts the times the VM was restored from a snapshot. The
	// VMM bumps it after writing a new Seed and a BootUnixNs that makes
	// the wall clock the host's; the kernel reads BootUnixNs on every
	// clock read and reseeds when it sees the count change.
	Restores uint64
}

// AmberInfo flags.
const (
	// AmberFlagHypercalls: the hypercall port is served (running under vmm).
	AmberFlagHypercalls = 1 << iota
	// AmberFlagLSTAR: EFER.SCE is set and a stray SYSCALL lands at LSTAR at
	// CPL3 (shadow-paging hosts); otherwise it raises #UD.
	AmberFlagLSTAR
)

// AmberNote is the fixed part of the Amber ELF note's descriptor: what the
// VMM needs from the image without reading its symbol table.
type AmberNote struct {
	ABIVersion uint32
	_          uint32
	Entry      uint64 // the kernel's 64-bit entry (kernel.start)
	LSTAR      uint64 // kernel.lstarEntry, where a stray SYSCALL lands
}

// ABIVersion changes whenever this contract changes; the VMM refuses an
// image whose kernel was built against another version.
const ABIVersion = 1

// ELF notes added to every image by `vmm build`.
const (
	NoteNameAmber  = "Amber"
	NoteTypeABI    = 1 // desc: AmberNote, then the Go version string
	NoteNameXen    = "Xen"
	NoteTypePVH    = 18 // XEN_ELFNOTE_PHYS32_ENTRY, desc: u32 entry
	KernelPkgPath  = "github.com/amberos/amber/kernel"
	KernelEntrySym = KernelPkgPath + ".start"
)
