package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/amberos/amber/boot"
	"golang.org/x/sys/unix"
)

// Memory the guest gives back (kernel/unmap.go). The guest's page tables
// change under the vCPU's cached translations, so it asks for a flush
// (HCFlushTLB); and it reports the physical pages it freed (HCRelease) so
// that the host's resident memory follows what the guest uses.

// hcFlushTLB makes KVM drop the vCPU's cached translations: a KVM_SET_SREGS
// whose CR3 differs from the current one resets the vCPU's MMU context
// (and with it the shadow page tables and the TLB). CR3's PWT bit (3)
// differs and is harmless: the root table is ordinary write-back RAM
// either way.
func hcFlushTLB(vm *VM, _ *boot.Hypercall) (int64, bool) {
	s, err := vm.vcpu.Sregs()
	if err != nil {
		return -5, true // EIO
	}
	s.CR3 ^= 1 << 3
	if err := vm.vcpu.SetSregs(s); err != nil {
		return -5, true
	}
	vm.tlbFlushes++
	return 0, true
}

// hcRelease serves HCRelease: A0 = the PA of the ReleaseRun array, A1 =
// its length.
func hcRelease(vm *VM, h *boot.Hypercall) (int64, bool) {
	runs, err := vm.mem.releaseRuns(h.A0, h.A1)
	if err == nil {
		err = vm.mem.release(runs)
	}
	if err != nil {
		return -22, true // EINVAL
	}
	for _, r := range runs {
		vm.releasedBytes += r.Len
	}
	return 0, true
}

// releaseRuns reads n ReleaseRuns at pa, checking the array against guest
// RAM and n against boot.MaxReleaseRuns.
func (m *GuestMemory) releaseRuns(pa, n uint64) ([]boot.ReleaseRun, error) {
	if n == 0 || n > boot.MaxReleaseRuns {
		return nil, fmt.Errorf("release: %d runs (1 to %d allowed)", n, boot.MaxReleaseRuns)
	}
	b, err := m.Slice(pa, n*16)
	if err != nil {
		return nil, err
	}
	runs := make([]boot.ReleaseRun, n)
	for i := range runs {
		runs[i].PA = binary.LittleEndian.Uint64(b[i*16:])
		runs[i].Len = binary.LittleEndian.Uint64(b[i*16+8:])
	}
	return runs, nil
}

// release drops the host pages behind the guest ranges runs: they read as
// zeros afterwards. Every run is checked before any is dropped: page
// alignment, a non-zero length and guest RAM's bounds, without overflow.
func (m *GuestMemory) release(runs []boot.ReleaseRun) error {
	const page = boot.PageSize
	for _, r := range runs {
		if r.PA%page != 0 || r.Len%page != 0 || r.Len == 0 {
			return fmt.Errorf("release: range [%#x, +%#x) is not whole pages", r.PA, r.Len)
		}
		if _, err := m.Slice(r.PA, r.Len); err != nil {
			return err
		}
	}
	for _, r := range runs {
		s, _ := m.Slice(r.PA, r.Len)
		if err := unix.Madvise(s, unix.MADV_DONTNEED); err != nil {
			return fmt.Errorf("release: madvise: %w", err)
		}
	}
	return nil
}
