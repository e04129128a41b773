package vmm

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"
)

// A restored VM starts without KVM's dirty log. Registering its memory
// slot with the log makes KVM allocate a bitmap per page of the slot (a
// restore cost that grows with memory size) and take a write-protection
// fault on the first write to every page; but the VM's first snapshot
// still has to know what changed since the restore. It does not need the
// log for that: the snapshot's memory is mapped MAP_PRIVATE from the
// store file, so a page written since the restore is one the process now
// holds privately (anonymous, copied on write), and a page only read is
// still the file's. /proc/self/pagemap tells them apart (privatePages);
// the first snapshot takes its dirty pages from there, then turns the log
// on for the next ones (snapshotNow).

// privatePages returns a bitmap of the guest pages that are the process's
// own: present and anonymous, or swapped out. In the ranges mapped from a
// file these are the pages written since they were mapped; elsewhere
// (the snapshot's holes, anonymous zero memory) the pages touched at all,
// a superset of those written: an incremental snapshot skips the ones
// still zero.
func (m *GuestMemory) privatePages() ([]uint64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ps := os.Getpagesize()
	pages := len(m.mem) / ps
	bitmap := make([]uint64, (pages+63)/64)
	const chunk = 1 << 16
	buf := make([]byte, 8*chunk)
	first := uintptr(unsafe.Pointer(&m.mem[0])) / uintptr(ps)
	for p := 0; p < pages; p += chunk {
		n := min(chunk, pages-p)
		if _, err := f.ReadAt(buf[:8*n], int64(first+uintptr(p))*8); err != nil {
			return nil, fmt.Errorf("reading /proc/self/pagemap: %w", err)
		}
		for i := range n {
			const present, swapped, file = 1 << 63, 1 << 62, 1 << 61
			e := binary.LittleEndian.Uint64(buf[8*i:])
			if e&swapped != 0 || e&(present|file) == present {
				bitmap[(p+i)/64] |= 1 << ((p + i) % 64)
			}
		}
	}
	return bitmap, nil
}
