package vmm

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"
)

// pagemap flags (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent   = 1 << 63
	pmFile      = 1 << 61 // a file page or shared anonymous memory
	pmExclusive = 1 << 56 // mapped exactly once
)

// GuestRSS is the part of this process's resident set (VmRSS) that is the
// guest's RAM: its pages present in /proc/self/pagemap that RSS counts.
// That leaves out what Resident counts but RSS does not: pages the guest
// (or KVM on its behalf) only read, which map the host's shared zero page
// (present, but neither a file page nor exclusively mapped). The VMM's own
// memory is VmRSS (or VmHWM) less this.
func (vm *VM) GuestRSS() (uint64, error) {
	m := vm.mem
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	pageSize := os.Getpagesize()
	pages := len(m.mem) / pageSize
	first := uintptr(unsafe.Pointer(&m.mem[0])) / uintptr(pageSize)
	// A small buffer: this runs while the VMM's memory is being measured.
	const chunk = 512
	var buf [8 * chunk]byte
	var n uint64
	for p := 0; p < pages; p += chunk {
		k := min(chunk, pages-p)
		if _, err := f.ReadAt(buf[:8*k], int64(first+uintptr(p))*8); err != nil {
			return 0, fmt.Errorf("reading /proc/self/pagemap: %w", err)
		}
		for i := range k {
			e := binary.LittleEndian.Uint64(buf[8*i:])
			if e&pmPresent != 0 && e&(pmFile|pmExclusive) != 0 {
				n++
			}
		}
	}
	return n * uint64(pageSize), nil
}
