package kernel

import "github.com/amberos/amber/boot"

// Memory. Guest RAM is identity-mapped by the boot page tables; the
// runtime's mappings (the arena at 0xc000000000 and whatever it asks for
// without a hint) get 4 KiB pages of their own from a physical page
// allocator. munmap and MADV_DONTNEED give pages back (unmap.go); file
// mappings are in mmapfile.go.

const (
	pteP        = 1 << 0
	pteW        = 1 << 1
	pteU        = 1 << 2
	ptePS       = 1 << 7
	pteAddrMask = 0x000f_ffff_ffff_f000

	mmapBase  = 0x2000_0000_0000 // addresses chosen for mmap(NULL, ...)
	mmapLimit = 0x20c0_0000_0000 // below the runtime's 33rd arena hint
	userLimit = 0x7fff_ffff_f000

	// lazyMin: anonymous mappings at least this large are filled on first
	// touch instead of at mmap time. The runtime maps a 32 MiB heap index
	// it touches at a handful of places; committing it eagerly would cost a
	// quarter of a 128 MiB VM.
	lazyMin   = 4 << 20
	lazyChunk = 64 << 10
	maxLazy   = 64
)

var (
	physNext, physEnd uintptr // bump allocator over free RAM
	mmapNext          uintptr = mmapBase
	lazy              [maxLazy]lazyRange
	freeList          uintptr // the top chunk of the free pages (freePage)
	nfree             uintptr
	nlazy             int
)

// lazyRange is a mapping filled on first touch. boot marks one made lazy
// only because the runtime was starting (startCommit): its untouched
// pages are charged to bootCharge at the first clone.
type lazyRange struct {
	start, end uintptr
	boot       bool
}

// bootCharge is the memory the untouched pages of the runtime's start-up
// mappings may still take (chargeStart): ordinary mmaps are checked
// against the free memory less this, so a program that runs out later
// gets ENOMEM from mmap, not a fault on one of those pages.
var bootCharge uintptr

// memInit hands the RAM after the image to the page allocator.
//
//go:nosplit
func memInit(si *boot.StartInfo) {
	free := (imageEnd() + boot.PageSize - 1) &^ (boot.PageSize - 1)
	if free < boot.LowIdentity {
		free = boot.LowIdentity
	}
	physNext = free
	poolStart = free
	physEnd = ramEnd
	if physNext >= physEnd {
		kfatal("boot: no memory after the image")
	}
}

//go:nosplit
func imageEnd() uintptr

// allocPage returns a zeroed physical page, or 0 when memory is exhausted.
// Freed pages (freePage) are reused first and zeroed here; pages never
// handed out are still zero from the VMM.
//
//go:nosplit
func allocPage() uintptr {
	if freeList != 0 {
		nfree--
		c := freeList
		if k := *u64at(c + 8); k > 0 {
			p := uintptr(*u64at(c + 8 + uintptr(k)*8))
			*u64at(c + 8) = k - 1
			clearPage(p)
			return p
		}
		freeList = uintptr(*u64at(c))
		clearPage(c)
		return c
	}
	if physNext+boot.PageSize > physEnd {
		return 0
	}
	p := physNext
	physNext += boot.PageSize
	return p
}

// The free pages form a stack of chunks: a chunk is a free page that
// lists up to freeChunkCap others (word 0: the next chunk, word 1: the
// count). Only the chunks hold anything, so a page listed in one may be
// handed back to the host (hostRelease) and come back as zeros.
const freeChunkCap = boot.PageSize/8 - 2

// freePage gives a page obtained from allocPage back. It returns false
// when the page became a chunk of the free stack (its contents matter
// from now on: it must not be released to the host).
//
//go:nosplit
func freePage(p uintptr) bool {
	if p == 0 || p&(boot.PageSize-1) != 0 {
		kfatal("freePage: bad page")
	}
	nfree++
	if c := freeList; c != 0 {
		if k := *u64at(c + 8); k < freeChunkCap {
			*u64at(c + 16 + uintptr(k)*8) = uint64(p)
			*u64at(c + 8) = k + 1
			return true
		}
	}
	*u64at(p) = uint64(freeList)
	*u64at(p + 8) = 0
	freeList = p
	return false
}

//go:nosplit
func freeBytes() uintptr { return physEnd - physNext + nfree*boot.PageSize }

// availBytes is the free memory an mmap may commit: freeBytes less what
// the runtime's start-up mappings are still owed (bootCharge).
//
//go:nosplit
func availBytes() uintptr {
	if f := freeBytes(); f > bootCharge {
		return f - bootCharge
	}
	return 0
}

// unmappedPages counts the pages of [start, end) not mapped yet.
//
//go:nosplit
func unmappedPages(start, end uintptr) uintptr {
	n := uintptr(0)
	for a := start; a < end; a += boot.PageSize {
		if _, ok := pageSpan(a); !ok {
			n++
		}
	}
	return n
}

// chargeStart ends the runtime's start (the first clone: the runtime
// starts sysmon before main.main): the untouched pages of the mappings
// made lazy for it are charged to bootCharge, up to half the free memory.
// A VM big enough for them (the OOM tests' 48 and 128 MiB) is thus
// accounted strictly, as before; a smaller one runs on the other half and
// could, in a program that ends up using all of its start-up heap, meet a
// fault where it would have met ENOMEM.
//
//go:nosplit
func chargeStart() {
	owed := uintptr(0)
	for i := 0; i < nlazy; i++ {
		if l := &lazy[i]; l.boot {
			owed += unmappedPages(l.start, l.end) * boot.PageSize
		}
	}
	if half := freeBytes() / 2; owed > half {
		owed = half
	}
	bootCharge = owed
}

// pte returns the address of the page-table entry for va, creating the
// intermediate tables. 0 means out of memory, 1 that va lies in a
// 2 MiB identity mapping.
//
//go:nosplit
func pte(va uintptr) uintptr {
	table := pml4
	for level := 3; level > 0; level-- {
		idx := (va >> (12 + 9*uint(level))) & 511
		e := u64at(table + idx*8)
		if *e&pteP == 0 {
			pg := allocPage()
			if pg == 0 {
				return 0
			}
			clearPage(pg)
			*e = uint64(pg) | pteP | pteW | pteU
		} else if *e&ptePS != 0 {
			return 1
		}
		table = uintptr(*e & pteAddrMask)
	}
	return table + ((va>>12)&511)*8
}

//go:nosplit
func clearPage(pa uintptr) {
	p := (*[boot.PageSize / 8]uint64)(ptr(pa))
	for i := range p {
		p[i] = 0
	}
}

// mapRange backs [va, va+n) with fresh pages where nothing is mapped yet;
// with clearOld it also zeroes the pages already mapped there.
//
//go:nosplit
func mapRange(va, n uintptr, clearOld bool) bool {
	end := va + n
	for a := va &^ (boot.PageSize - 1); a < end; a += boot.PageSize {
		e := pte(a)
		if e == 0 {
			return false
		}
		if e == 1 {
			continue
		}
		if nfmaps > 0 && fileMapAt(a) != nil {
			continue // a file's page past its end: filled when the file grows
		}
		if *u64at(e)&pteP != 0 {
			if clearOld {
				clearPage(uintptr(*u64at(e) & pteAddrMask))
			}
			continue
		}
		pg := allocPage()
		if pg == 0 {
			return false
		}
		*u64at(e) = uint64(pg) | pteP | pteW | pteU
	}
	return true
}

// virtToPhys translates a mapped address, or returns 0.
//
//go:nosplit
func virtToPhys(va uintptr) uintptr {
	table := pml4
	for level := 3; level >= 0; level-- {
		idx := (va >> (12 + 9*uint(level))) & 511
		e := *u64at(table + idx*8)
		if e&pteP == 0 {
			return 0
		}
		if level == 0 || e&ptePS != 0 {
			size := uintptr(1) << (12 + 9*uint(level))
			return uintptr(e&pteAddrMask)&^(size-1) | va&(size-1)
		}
		table = uintptr(e & pteAddrMask)
	}
	return 0
}

// mmap flags and protections (linux/mman.h).
const (
	protNone     = 0
	mapShared    = 0x01
	mapPrivate   = 0x02
	mapFixed     = 0x10
	mapAnonymous = 0x20
	mapNoreplace = 0x100000
	mapPopulate  = 0x8000
)

// regions records every address range ever mapped or reserved. A range
// is never handed out twice (a stale translation of an unmapped address
// can then only be reached by a program touching memory it unmapped,
// which Linux would kill with SIGSEGV), and Go 1.26
// picks random heap addresses that can fall anywhere below 2^46 — a hint
// that overlaps an earlier mapping must be refused, as Linux does.
var (
	regions  [maxRegions]struct{ start, end uintptr }
	nregions int
)

const maxRegions = 4096

//go:nosplit
func regionFree(addr, length uintptr) bool {
	if addr < ramEnd && addr+length > boot.NullGuard {
		return false // RAM's identity range
	}
	if addr < mmapLimit && addr+length > mmapBase {
		return false // the range mmap(NULL) allocates from
	}
	for i := 0; i < nregions; i++ {
		if addr < regions[i].end && addr+length > regions[i].start {
			return false
		}
	}
	return true
}

//go:nosplit
func addRegion(addr, length uintptr) {
	// Extend a neighbour when possible: the runtime maps in many pieces.
	for i := 0; i < nregions; i++ {
		if regions[i].end == addr {
			regions[i].end = addr + length
			return
		}
	}
	if nregions < maxRegions {
		regions[nregions].start, regions[nregions].end = addr, addr+length
		nregions++
	}
}

//go:nosplit
func sysMmap(f *sysFrame) int64 {
	if f.r10&mapAnonymous == 0 {
		if o := getFile(f.r8); o != nil && o.kind == fdData {
			return mmapData(f) // datafile.go: a private copy of a /data file
		}
	}
	return mmapAnon(f)
}

//go:nosplit
func mmapAnon(f *sysFrame) int64 {
	addr, length, prot, flags := uintptr(f.rdi), uintptr(f.rsi), f.rdx, f.r10
	if length == 0 || addr&(boot.PageSize-1) != 0 {
		return -eINVAL
	}
	var fm fileMap
	if flags&mapAnonymous == 0 {
		if r := fileMapCheck(f, &fm); r != 0 {
			return r
		}
	}
	// Linux: a length that rounds up to 0 or exceeds user space, or a
	// fixed mapping that would end beyond it, is ENOMEM.
	if length > userLimit {
		return -eNOMEM
	}
	length = (length + boot.PageSize - 1) &^ (boot.PageSize - 1)
	if addr+length < addr || addr+length > userLimit {
		if flags&mapFixed != 0 {
			return -eNOMEM
		}
		addr = 0
	}
	fresh := true
	if flags&mapFixed != 0 {
		if addr < ramEnd && addr+length > boot.NullGuard {
			return -eINVAL // cannot replace RAM's identity mapping
		}
		fresh = regionFree(addr, length)
	} else if addr != 0 && !regionFree(addr, length) {
		addr = 0 // the hint is taken: pick another place, as Linux does
	}
	if fm.ino != 0 && fm.shared && nfmaps == maxFileMaps {
		return -eNOMEM // Linux's vm.max_map_count
	}
	if addr == 0 {
		if mmapNext+length > mmapLimit {
			return -eNOMEM
		}
		addr = mmapNext
		mmapNext += length
	} else {
		addRegion(addr, length)
	}
	if !fresh {
		// Replacing earlier mappings: they go first, as with munmap (a
		// file's pages must not be cleared, the program's are freed).
		unmapRange(addr, addr+length)
	}
	if fm.ino != 0 {
		return fileMapInstall(&fm, addr, length)
	}
	if prot == protNone {
		return int64(addr) // a reservation: committed later with MAP_FIXED
	}
	// A read-only private mapping is not charged against free memory, as
	// Linux's overcommit does not account it: programs reserve address
	// space that way (starlark maps 4 GiB PROT_READ for its small
	// integers) and only the pages they touch are filled.
	//
	// The runtime maps its 32 MiB heap index while it starts (no thread
	// cloned yet) and touches a page of it per 64 MiB arena: taken as
	// lazy whatever the free memory, it lets a VM smaller than the index
	// boot.
	//
	// While it starts, the runtime also commits a 4 MiB heap chunk, span
	// and GC metadata of which hello touches a fraction: those mappings
	// (MAP_FIXED or not, from 64 KiB) are lazy too, and charged at the
	// first clone (chargeStart), which is what lets hello boot in 8 MiB.
	starting := nextTid == 2
	if flags&mapFixed == 0 && length >= lazyMin && nlazy < maxLazy && (length <= availBytes() || prot&protWrite == 0 || starting) {
		lazy[nlazy] = lazyRange{start: addr, end: addr + length}
		nlazy++
		return int64(addr)
	}
	if starting && length >= lazyChunk && nlazy < maxLazy && (fresh || canFlush()) {
		lazy[nlazy] = lazyRange{start: addr, end: addr + length, boot: true}
		nlazy++
		return int64(addr)
	}
	// Refuse a mapping the free memory cannot back before taking any of
	// it (mapRange would map what it could and keep it).
	if (fresh || canFlush()) && length > availBytes() {
		return -eNOMEM
	}
	// clearOld matters only under a VMM that cannot flush, where
	// unmapRange left the old pages in place: they start zeroed.
	if !mapRange(addr, length, !fresh) {
		unmapRange(addr, addr+length)
		return -eNOMEM
	}
	return int64(addr)
}

// unmapRange removes every mapping of [start, end): pages, lazy ranges
// and file mappings.
//
//go:nosplit
func unmapRange(start, end uintptr) {
	unmapPages(start, end, false)
	lazyRemove(start, end)
	fileMapRemove(start, end)
}

// lazyRemove takes [start, end) out of the lazy mappings.
//
//go:nosplit
func lazyRemove(start, end uintptr) {
	for i := 0; i < nlazy; i++ {
		l := &lazy[i]
		if end <= l.start || start >= l.end {
			continue
		}
		switch {
		case start <= l.start && end >= l.end:
			nlazy--
			*l = lazy[nlazy]
			i--
		case start <= l.start:
			l.start = end
		case end >= l.end:
			l.end = start
		case nlazy < maxLazy:
			lazy[nlazy] = *l
			lazy[nlazy].start = end
			nlazy++
			l.end = start
		default:
			// No slot for the tail: it stays lazy, which only matters to a
			// program touching memory it unmapped.
			l.end = start
		}
	}
}

// lazyFault maps the chunk around a first touch of a lazy mapping, a page
// MADV_DONTNEED released, or a page of a shared file mapping.
//
//go:nosplit
func lazyFault(addr uintptr) bool {
	lazyOOM = false
	if zeroFault(addr) || fileMapFault(addr) {
		return true
	}
	for i := 0; i < nlazy; i++ {
		l := &lazy[i]
		if addr >= l.start && addr < l.end {
			a := addr &^ (lazyChunk - 1)
			if a < l.start {
				a = l.start
			}
			n := uintptr(lazyChunk)
			if a+n > l.end {
				n = l.end - a
			}
			if l.boot && bootCharge > 0 {
				got := unmappedPages(a, a+n) * boot.PageSize
				if got > bootCharge {
					got = bootCharge
				}
				bootCharge -= got
			}
			if !mapRange(a, n, false) {
				lazyOOM = true // trap ends the program the way Linux's OOM killer does
				return false
			}
			return true
		}
	}
	return false
}

// lazyOOM says the last lazyFault was in a lazy mapping but found no free
// page to fill it with.
var lazyOOM bool

// recorded reports whether all of [addr, end) is mapped for the program:
// handed out by mmap (recorded in regions or below mmapNext) or in RAM's
// identity range (the image and the process stack).
//
//go:nosplit
func recorded(addr, end uintptr) bool {
	for addr < end {
		switch {
		case addr >= boot.NullGuard && addr < ramEnd:
			addr = ramEnd
		case addr >= mmapBase && addr < mmapNext:
			addr = mmapNext
		default:
			i := 0
			for i < nregions && (addr < regions[i].start || addr >= regions[i].end) {
				i++
			}
			if i == nregions {
				return false
			}
			addr = regions[i].end
		}
	}
	return true
}

// sysMunmap frees the pages of the range and forgets its mappings. The
// addresses stay recorded (regions): they are never handed out again.
//
//go:nosplit
func sysMunmap(f *sysFrame) int64 {
	addr, n := uintptr(f.rdi), uintptr(f.rsi)
	if addr&(boot.PageSize-1) != 0 || n == 0 || addr > userLimit || n > userLimit-addr {
		return -eINVAL
	}
	unmapRange(addr, addr+(n+boot.PageSize-1)&^(boot.PageSize-1))
	return 0
}

// sysMprotect commits the pages of a range made accessible (protections
// are not enforced). As on Linux, a range not wholly mapped is ENOMEM.
//
//go:nosplit
func sysMprotect(f *sysFrame) int64 {
	addr, n := uintptr(f.rdi), uintptr(f.rsi)
	if addr&(boot.PageSize-1) != 0 {
		return -eINVAL
	}
	if n == 0 {
		return 0
	}
	n = (n + boot.PageSize - 1) &^ (boot.PageSize - 1)
	if n == 0 || addr+n <= addr || addr+n > userLimit || !recorded(addr, addr+n) {
		return -eNOMEM
	}
	if f.rdx != protNone {
		if !mapRange(addr, n, false) {
			return -eNOMEM
		}
	}
	return 0
}

// sysMadvise: MADV_DONTNEED on private anonymous memory makes the range
// read back as zeros on Linux, and programs rely on that (the Go runtime's
// scavenger among them): the pages are freed and their entries marked
// pteZero, so the next touch gets a fresh zero page. Pages of shared file
// mappings stay (Linux would read the file again: the same bytes).
// MADV_FREE and MADV_REMOVE are not MADV_DONTNEED: the runtime only uses
// MADV_FREE when told to (GODEBUG=madvdontneed=0) and treats it as a hint.
//
//go:nosplit
func sysMadvise(f *sysFrame) int64 {
	const madvDontneed = 4
	addr, n := uintptr(f.rdi), uintptr(f.rsi)
	if addr&(boot.PageSize-1) != 0 {
		return -eINVAL
	}
	end := addr + (n+boot.PageSize-1)&^(boot.PageSize-1)
	if n != 0 && end == addr || end < addr {
		return -eINVAL
	}
	if end > userLimit {
		return -eNOMEM
	}
	if f.rdx == madvDontneed {
		unmapPages(addr, end, true)
	}
	return 0
}

//go:nosplit
func sysBrk(f *sysFrame) int64 { return 0 }
