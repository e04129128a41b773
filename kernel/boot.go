package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Facts from the boot information, fixed after kinit.
var (
	pvHypercalls bool // running under Amber's VMM: hypercalls are served
	ramEnd       uintptr
	pml4         uintptr
	seed         [4]uint64
	haveRDRAND   bool
	lstarPC      uintptr
	amberInfo    uintptr // the VMM's boot.AmberInfo; 0 under other loaders
	seedRestores uint64  // AmberInfo.Restores when seed was last taken
)

// kinit runs on the boot stack before the Go runtime exists. It sets up
// the kernel and builds the process stack that _rt0_amd64_linux expects,
// returning its address.
//
//go:nosplit
func kinit(startInfo uintptr) uintptr {
	si := (*boot.StartInfo)(ptr(startInfo))
	ai := (*boot.AmberInfo)(ptr(startInfo + boot.AmberInfoOffset))
	if si.Magic != boot.StartInfoMagic {
		kfatal("boot: no PVH start info")
	}
	if ai.Magic == boot.AmberInfoMagic && ai.ABIVersion == boot.ABIVersion {
		pvHypercalls = ai.Flags&boot.AmberFlagHypercalls != 0
		ramEnd = uintptr(ai.RAMEnd)
		pml4 = uintptr(ai.PML4)
		seed = ai.Seed
		timeInit(ai.TSCHz, ai.BootTSC, ai.BootUnixNs)
		hostSignals = uintptr(unsafe.Pointer(&ai.HostSignals))
		amberInfo = uintptr(unsafe.Pointer(ai))
		seedRestores = ai.Restores
	} else {
		// Started by another PVH loader (QEMU, Firecracker, ...): no
		// hypercalls; RAM, time and TSC come from portable sources.
		pvhInit(si) // kernel/pvh.go
	}
	// The VMM points LSTAR at lstarEntry; taking its address keeps the
	// linker from discarding it as unreferenced.
	lstarPC = lstarEntryPC()
	_, _, c, _ := cpuid(1, 0)
	haveRDRAND = c&(1<<30) != 0

	uaccessCheck()
	fpuInit()
	idtInit()
	if !pvHypercalls {
		gateInit() // kernel/unmap.go
	}
	memInit(si)
	threadsInit()
	sp := buildProcessStack(si)
	exePath = uintptr(*u64at(sp + 8)) // argv[0]: /proc/self/exe names it
	// The devices first: fsInit, which the unpacking runs, makes
	// /dev/vda and the mount point of /data only for a disk found.
	virtioInitFn(si) // blkdev.go
	stdioInit(si)
	dataConfig(si) // datafile.go
	idlePollConfig(si)
	unpackFn()
	if !cmdlineHas(si, "amber.tick=off") {
		lapicInit()
	}
	return sp
}

// cmdlineHas reports whether the command line holds the kernel option
// opt (amber.tick=off runs without the preemption tick). Environment
// entries and arguments that happen to read the same do not count.
//
//go:nosplit
func cmdlineHas(si *boot.StartInfo, opt string) bool {
	rest := cmdlineBytes(si)
	for {
		tok, r, ok := nextToken(rest, cmdlineScratch[:])
		if !ok || len(tok) == 2 && tok[0] == '-' && tok[1] == '-' {
			return false
		}
		rest = r
		if len(tok) == len(opt) && hasPrefix(tok, opt) && isOption(tok) && !hasPrefix(tok, boot.EnvOption) {
			return true
		}
	}
}

// cmdlineScratch holds a token cmdlineHas unquotes.
var cmdlineScratch [boot.MaxCmdline]byte

//go:nosplit
func cmdlineBytes(si *boot.StartInfo) []byte {
	if si.CmdlinePaddr == 0 {
		return nil
	}
	p := uintptr(si.CmdlinePaddr)
	n := uintptr(0)
	for n < boot.MaxCmdline && *(*byte)(ptr(p + n)) != 0 {
		n++
	}
	return userBytes(p, n)
}

// tssIST3 is where the TSS keeps IST3, once the interrupt stack; no gate
// uses it since device vectors moved to irqEntry (a nested delivery on an
// IST stack starts over on the frame in use), but the stack stays
// reserved and set for both boot paths.
const tssIST3 = 0x34

// idtInit points every IDT gate at its entry stub: trap gates (interrupt
// masking is out of reach at CPL3), DPL3, selector 0x33, IST1 (IST2 for
// double fault, NMI and machine check so they get a fresh stack).
//
//go:nosplit
func idtInit() {
	*u64at(boot.TSSPA + tssIST3) = boot.IST3Top
	for v := 0; v < 256; v++ {
		off := uint64(vectorTable[v])
		ist := uint64(1)
		switch {
		case v == 2 || v == 8 || v == 18:
			ist = 2
		case v == timerVector:
			// No IST: interrupts nest (IF cannot be cleared at CPL3), and
			// a nested delivery on an IST stack would start over on the
			// frame in use. timerEntry moves to the kernel stack.
			off, ist = uint64(timerEntryPC()), 0
		case v >= 32:
			// No IST either: irqEntry moves to the kernel stack and
			// makes device interrupts that nest only record themselves.
			ist = 0
		}
		lo := off&0xffff | uint64(boot.SelUserCode)<<16 | ist<<32 | uint64(0x80|0x60|0xf)<<40 | (off>>16&0xffff)<<48
		*u64at(boot.IDTPA + uintptr(v)*16) = lo
		*u64at(boot.IDTPA + uintptr(v)*16 + 8) = off >> 32
	}
}

// Auxiliary vector keys the runtime reads.
const (
	atNull   = 0
	atPagesz = 6
	atRandom = 25
	atSecure = 23
	atUID    = 11
	atEUID   = 12
	atGID    = 13
	atEGID   = 14
	atHWCAP  = 16
	atExecfn = 31
)

// buildProcessStack lays out the main thread's stack from the command line.
//
//go:nosplit
func buildProcessStack(si *boot.StartInfo) uintptr {
	cmd := cmdlineBytes(si)
	return layoutProcessStack(cmd, boot.StackTop, randomU64(), randomU64())
}

// layoutProcessStack writes argc, argv, envp and auxv below top,
// Linux-style, from a command line (boot/cmdline.go): dotted KEY=VALUE
// tokens are kernel options (but amber.env=NAME=VALUE is the environment
// entry NAME=VALUE), other KEY=VALUE tokens the environment, tokens after
// "--" the arguments. It returns the initial stack pointer,
// 16-byte aligned, pointing at argc.
//
//go:nosplit
func layoutProcessStack(cmd []byte, top uintptr, random0, random1 uint64) uintptr {
	// Strings go at the top, then two arrays collecting the pointers, then
	// AT_RANDOM's bytes, then the vectors the runtime reads.
	strBase := (top - uintptr(len(cmd)) - 64) &^ 15
	strs := userBytes(strBase, top-strBase)
	used := 0
	const maxPtrs = 512
	argvArea := strBase - maxPtrs*8*2
	argv := (*[maxPtrs]uintptr)(ptr(argvArea))
	envp := (*[maxPtrs]uintptr)(ptr(argvArea + maxPtrs*8))
	argc, envc := 1, 0
	argv0 := uintptr(0)
	rest := cmd
	afterDashes := false
	for {
		var tok []byte
		var ok bool
		tok, rest, ok = nextToken(rest, strs[used:])
		if !ok {
			break
		}
		start := strBase + uintptr(used)
		used += len(tok) + 1
		strs[used-1] = 0
		switch {
		case afterDashes:
			if argc < maxPtrs-1 {
				argv[argc] = start
				argc++
			}
		case len(tok) == 2 && tok[0] == '-' && tok[1] == '-':
			afterDashes = true
			used -= 3
		case hasPrefix(tok, boot.EnvOption) && indexByte(tok[len(boot.EnvOption):], '=') > 0:
			// An environment entry whose name would read as an option.
			if envc < maxPtrs-1 {
				envp[envc] = start + uintptr(len(boot.EnvOption))
				envc++
			}
		case isOption(tok):
			if hasPrefix(tok, "amber.argv0=") {
				argv0 = start + uintptr(len("amber.argv0="))
			}
		case indexByte(tok, '=') > 0:
			if envc < maxPtrs-1 {
				envp[envc] = start
				envc++
			}
		default:
			// A bare word before "--" is an argument too, as Linux does for init.
			if argc < maxPtrs-1 {
				argv[argc] = start
				argc++
			}
		}
	}
	// QEMU's virtio_mmio.device= entries at the end, after the program's
	// arguments, are the kernel's (virtioInit).
	for afterDashes && argc > 1 && isVirtioMMIO(userBytes(argv[argc-1], uintptr(len(virtioKey)))) {
		argc--
	}
	if argv0 == 0 {
		name := "app"
		argv0 = strBase + uintptr(used)
		for i := 0; i < len(name); i++ {
			strs[used] = name[i]
			used++
		}
		strs[used] = 0
		used++
	}
	argv[0] = argv0

	random := (argvArea - 32) &^ 15
	*u64at(random) = random0
	*u64at(random + 8) = random1

	words := uintptr(1+argc+1+envc+1) + 2*9
	sp := (random - words*8) &^ 15
	w := sp
	*u64at(w) = uint64(argc)
	w += 8
	for i := 0; i < argc; i++ {
		*u64at(w) = uint64(argv[i])
		w += 8
	}
	*u64at(w) = 0
	w += 8
	for i := 0; i < envc; i++ {
		*u64at(w) = uint64(envp[i])
		w += 8
	}
	*u64at(w) = 0
	w += 8
	aux := [...]uint64{
		atPagesz, boot.PageSize,
		atRandom, uint64(random),
		atSecure, 0,
		atUID, 0, atEUID, 0, atGID, 0, atEGID, 0,
		atExecfn, uint64(argv0),
		atNull, 0,
	}
	for i := 0; i < len(aux); i++ {
		*u64at(w) = aux[i]
		w += 8
	}
	return sp
}

//go:nosplit
func isOption(tok []byte) bool {
	eq := indexByte(tok, '=')
	if eq <= 0 {
		return false
	}
	return indexByte(tok[:eq], '.') > 0
}

//go:nosplit
func indexByte(b []byte, c byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

//go:nosplit
func hasPrefix(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if b[i] != p[i] {
			return false
		}
	}
	return true
}

//go:nosplit
func nextToken(s, dst []byte) ([]byte, []byte, bool) {
	return boot.NextToken(s, dst)
}
