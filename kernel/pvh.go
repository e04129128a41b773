package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Booting without Amber's VMM. Another PVH loader (QEMU -kernel,
// Firecracker, Cloud Hypervisor) entered the image at pvhEntry
// (pvh_amd64.s), which moved the start info to boot.StartInfoPA and built
// the boot page tables; AmberInfo is absent, so every fact the VMM would
// hand over comes from a portable source here: RAM from the PVH memory map,
// the TSC frequency from CPUID or a calibration against the PIT or the CMOS
// RTC, wall-clock time from the RTC. Console (16550), exit (isa-debug-exit)
// and idle (polling) already fall back when pvHypercalls is false.

// Implemented in pvh_amd64.s.
func pvhEntry()
func pvhEntryPC() uintptr

// pvhPC is the 32-bit entry's address; taking it keeps the linker from
// discarding pvhEntry, which nothing calls (`vmm build` puts it in the
// Xen PVH note).
var pvhPC uintptr

// pvhInit is kinit's path when the boot info carries no AmberInfo.
//
//go:nosplit
func pvhInit(si *boot.StartInfo) {
	pvhPC = pvhEntryPC()
	var m []boot.MemmapEntry
	if si.MemmapPaddr != 0 {
		n := uintptr(si.MemmapEntries)
		if n > boot.MaxMemmapEntries {
			n = boot.MaxMemmapEntries
		}
		m = unsafe.Slice((*boot.MemmapEntry)(ptr(uintptr(si.MemmapPaddr))), n)
	}
	ramEnd = uintptr(boot.RAMEnd(m))
	if ramEnd == 0 {
		kfatal("boot: the PVH memory map has no RAM at the image")
	}
	pml4 = boot.PML4PA
	seed[0], seed[1] = rdtsc(), uint64(ramEnd)
	hz := tscFrequency()
	tsc0, unixNs := rtcNow()
	timeInit(hz, tsc0, uint64(unixNs))
	seed[2], seed[3] = uint64(unixNs), rdtsc()
}
