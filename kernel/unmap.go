package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Giving memory back. munmap and MADV_DONTNEED clear page-table entries
// and free the pages behind them; a changed entry may still be cached in
// the TLB (on shadow-paging hosts, in the host's shadow tables), so every
// call that clears entries flushes once, before it returns and before a
// freed page can be handed out again (tlbFlush). Freed pages are then
// reported to the host in batches (hostRelease), so the VMM can drop
// them from its own memory.
//
// Page-table entries use two of the bits the MMU ignores:
//
//   - pteShared on a present entry: the page belongs to a file
//     (a MAP_SHARED mapping, mmapfile.go), so unmapping it never frees it.
//   - pteZero on an entry that is not present: the page was released by
//     MADV_DONTNEED and reads as zeros on its next touch (lazyFault).
const (
	pteShared = 1 << 9
	pteZero   = 1 << 10
)

// pteAt returns the address of the 4 KiB page-table entry for va without
// creating tables, or 0 and the size of the unit around va to skip: an
// unmapped table's reach, or a 2 MiB or 1 GiB page (RAM's identity
// mapping, the LAPIC), which are never given back.
//
//go:nosplit
func pteAt(va uintptr) (uintptr, uintptr) {
	table := pml4
	for level := 3; level > 0; level-- {
		e := *u64at(table + ((va>>(12+9*uint(level)))&511)*8)
		if e&pteP == 0 || e&ptePS != 0 {
			return 0, uintptr(1) << (12 + 9*uint(level))
		}
		table = uintptr(e & pteAddrMask)
	}
	return table + ((va>>12)&511)*8, boot.PageSize
}

// unmapPages clears the entries of [start, end) and frees the pages the
// mapping owned: for munmap every entry, for MADV_DONTNEED (dontneed)
// only the private ones, which become pteZero. RAM's identity range is
// left alone. It flushes the TLB once when anything changed and reports
// whether anything did. Under a VMM that cannot flush, nothing is
// unmapped and MADV_DONTNEED zeroes the pages in place.
//
//go:nosplit
func unmapPages(start, end uintptr, dontneed bool) bool {
	if start < ramEnd {
		start = ramEnd
	}
	if !canFlush() {
		if dontneed {
			clearInPlace(start, end)
		}
		return false
	}
	changed := false
	for a := start; a < end; {
		e, size := pteAt(a)
		if e == 0 {
			a = a&^(size-1) + size
			continue
		}
		v := *u64at(e)
		switch {
		case v&pteP != 0 && v&pteShared != 0:
			if !dontneed {
				*u64at(e) = 0
				changed = true
			}
		case v&pteP != 0:
			pg := uintptr(v & pteAddrMask)
			if dontneed {
				*u64at(e) = pteZero
			} else {
				*u64at(e) = 0
			}
			if freePage(pg) {
				hostRelease(pg)
			}
			changed = true
		case v&pteZero != 0 && !dontneed:
			*u64at(e) = 0
		}
		a += boot.PageSize
	}
	if !dontneed {
		freeTables(start, end)
	}
	if changed {
		forgetUserPages(start, end)
		tlbFlush(start, end)
	}
	hostReleaseFlush()
	return changed
}

// freeTables frees the page tables of the 2 MiB blocks wholly inside
// [start, end) once they map nothing: a program that maps and unmaps
// fresh address ranges would otherwise leave a table behind per 2 MiB.
//
//go:nosplit
func freeTables(start, end uintptr) {
	const huge = boot.HugePageSize
	for b := (start + huge - 1) &^ (huge - 1); b+huge <= end && b+huge > b; b += huge {
		table := pml4
		var pde *uint64
		for level := 3; level > 1; level-- {
			e := *u64at(table + ((b>>(12+9*uint(level)))&511)*8)
			if e&pteP == 0 || e&ptePS != 0 {
				break
			}
			table = uintptr(e & pteAddrMask)
			if level == 2 {
				pde = u64at(table + ((b>>21)&511)*8)
			}
		}
		if pde == nil || *pde&pteP == 0 || *pde&ptePS != 0 {
			continue
		}
		pt := uintptr(*pde & pteAddrMask)
		empty := true
		for i := uintptr(0); i < 512; i++ {
			if *u64at(pt + i*8) != 0 {
				empty = false
				break
			}
		}
		if empty {
			*pde = 0
			freePage(pt)
		}
	}
}

// forgetUserPages drops the pages of [start, end) from userPrefix's cache.
//
//go:nosplit
func forgetUserPages(start, end uintptr) {
	for i := range userPages {
		if p := userPages[i]; p >= start&^(boot.PageSize-1) && p < end {
			userPages[i] = 0
		}
	}
}

// invlpgMax: a flush of at most this many pages under a plain PVH loader
// invalidates them one by one instead of reloading CR3.
const invlpgMax = 16

// tlbFlush makes the CPU (and a shadow-paging host) forget the entries
// of [start, end) just changed. Under Amber's VMM it is a hypercall (the
// VMM reloads CR3: ~50 µs on shadow paging, so callers batch a whole call
// into one); under another PVH loader the kernel's CPL0 gates do it.
//
//go:nosplit
func tlbFlush(start, end uintptr) {
	if hostedTest || noTLB {
		return
	}
	tlbFlushes++
	if pvHypercalls {
		hcall(boot.HCFlushTLB, uint64(start), uint64(end-start), 0)
		return
	}
	if (end-start)/boot.PageSize <= invlpgMax {
		for a := start &^ (boot.PageSize - 1); a < end; a += boot.PageSize {
			gateInvlpg(a)
		}
		return
	}
	gateFlush()
}

var tlbFlushes uint64

// flushProbe is 0 until the first unmap asks whether the VMM flushes, then
// 1 (it does) or 2 (it answered an error: a VMM older than HCFlushTLB).
var flushProbe uint8

// canFlush reports whether page-table entries may be removed: without a
// flush a stale translation would reach a page after it is reused.
//
//go:nosplit
func canFlush() bool {
	if !pvHypercalls || hostedTest || noTLB {
		return true
	}
	if flushProbe == 0 {
		flushProbe = 2
		if hcall(boot.HCFlushTLB, 0, 0, 0) == 0 {
			flushProbe = 1
		}
	}
	return flushProbe == 1
}

// clearInPlace is MADV_DONTNEED where nothing can be unmapped: the
// private pages stay mapped and are zeroed.
//
//go:nosplit
func clearInPlace(start, end uintptr) {
	for a := start; a < end; {
		e, size := pteAt(a)
		if e == 0 {
			a = a&^(size-1) + size
			continue
		}
		if v := *u64at(e); v&pteP != 0 && v&pteShared == 0 {
			clearPage(uintptr(v & pteAddrMask))
		}
		a += boot.PageSize
	}
}

// noTLB is set by the kernel's tests, which walk page tables of their own
// on the host: there is no TLB of theirs to flush.
var noTLB bool

// Implemented in unmap_amd64.s. The gates run at CPL0 through IDT vectors
// the kernel installs only when no VMM serves hypercalls (gateInit).
func gateFlush()
func gateInvlpg(va uintptr)
func gateCR2() uintptr
func gateFlushEntry()
func gateInvlpgEntry()
func gateCR2Entry()
func gatePCs() (flush, invlpg, cr2 uintptr)

// The gates' vectors: software interrupts, above the APIC's.
const (
	vecGateFlush  = 0xf0
	vecGateInvlpg = 0xf1
	vecGateCR2    = 0xf2
)

// gateStack is the CPL0 stack the gates run on (TSS.RSP0): interrupt
// gates clear IF, so nothing nests on it.
var gateStack [512]byte

// gateInit installs the CPL0 gates: interrupt gates (IF cleared), DPL3 so
// the kernel can raise them at CPL3, the 64-bit kernel code selector.
// Only a plain PVH boot has a CPL0 to go to at reasonable cost (under
// kvm_pvm CPL0 code is emulated); the VMM path uses hypercalls.
//
//go:nosplit
func gateInit() {
	top := (uintptr(unsafe.Pointer(&gateStack[0])) + uintptr(len(gateStack))) &^ 15
	*u32at(boot.TSSPA + 4) = uint32(top)
	*u32at(boot.TSSPA + 8) = uint32(top >> 32)
	flush, invlpg, cr2 := gatePCs()
	setGate(vecGateFlush, flush)
	setGate(vecGateInvlpg, invlpg)
	setGate(vecGateCR2, cr2)
}

//go:nosplit
func setGate(v int, off uintptr) {
	lo := uint64(off)&0xffff | uint64(boot.SelKernelCode)<<16 | uint64(0x80|0x60|0xe)<<40 | (uint64(off)>>16&0xffff)<<48
	*u64at(boot.IDTPA + uintptr(v)*16) = lo
	*u64at(boot.IDTPA + uintptr(v)*16 + 8) = uint64(off) >> 32
}

// faultAddr returns the address of the page fault being handled (CR2),
// which CPL3 code cannot read itself.
//
//go:nosplit
func faultAddr() uintptr {
	if pvHypercalls {
		return uintptr(hcall(boot.HCFaultAddr, 0, 0, 0))
	}
	return gateCR2()
}

// releaseRuns batches the physical ranges freed by one call for the host
// (boot.HCRelease): one exit per call, not per page.
var (
	releaseRuns [boot.MaxReleaseRuns]boot.ReleaseRun
	nrelease    int
	released    uint64 // pages reported to the host so far
)

// hostRelease queues page pg for the host. Only pages whose contents no
// longer matter may be queued: the host hands them back as zeros.
//
//go:nosplit
func hostRelease(pg uintptr) {
	if !pvHypercalls {
		return
	}
	if nrelease > 0 {
		r := &releaseRuns[nrelease-1]
		if r.PA+r.Len == uint64(pg) {
			r.Len += boot.PageSize
			return
		}
	}
	if nrelease == len(releaseRuns) {
		hostReleaseFlush()
	}
	releaseRuns[nrelease] = boot.ReleaseRun{PA: uint64(pg), Len: boot.PageSize}
	nrelease++
}

//go:nosplit
func hostReleaseFlush() {
	if nrelease == 0 {
		return
	}
	for i := 0; i < nrelease; i++ {
		released += releaseRuns[i].Len / boot.PageSize
	}
	hcall(boot.HCRelease, uint64(uintptr(unsafe.Pointer(&releaseRuns[0]))), uint64(nrelease), 0)
	nrelease = 0
}

// zeroFault fills the pteZero pages of the lazyChunk around addr when
// addr's page is one: false when it is not, or memory ran out.
//
//go:nosplit
func zeroFault(addr uintptr) bool {
	e, _ := pteAt(addr)
	if e == 0 || *u64at(e)&(pteP|pteZero) != pteZero {
		return false
	}
	pg := allocPage()
	if pg == 0 {
		return false
	}
	*u64at(e) = uint64(pg) | pteP | pteW | pteU
	// Neighbours in the same chunk too: the runtime touches released
	// spans in order, and each fault costs an exit.
	base := addr &^ (lazyChunk - 1)
	for a := base; a < base+lazyChunk; a += boot.PageSize {
		e, _ := pteAt(a)
		if e == 0 || *u64at(e)&(pteP|pteZero) != pteZero {
			continue
		}
		pg := allocPage()
		if pg == 0 {
			break
		}
		*u64at(e) = uint64(pg) | pteP | pteW | pteU
	}
	return true
}
