package vmm

import "os"

// GuestRSS is the part of this process's resident set (VmRSS) that is the
// guest's RAM: its pages present in /proc/self/pagemap that RSS counts.
// That leaves out what Resident counts but RSS does not: pages the guest
// (or KVM on its behalf) only read, which map the host's shared zero page
// (present, but neither a file page nor exclusively mapped). The VMM's own
// memory is VmRSS (or VmHWM) less this.
func (vm *VM) GuestRSS() (uint64, error) {
	// A small buffer: this runs while the VMM's memory is being measured.
	var buf [4096]byte
	var n uint64
	err := vm.mem.walkPagemap(buf[:], func(_ int, e uint64) {
		if e&pmPresent != 0 && e&(pmFile|pmExclusive) != 0 {
			n++
		}
	})
	return n * uint64(os.Getpagesize()), err
}
