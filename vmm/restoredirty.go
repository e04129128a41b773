package vmm

import "os"

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
	bitmap := make([]uint64, (len(m.mem)/os.Getpagesize()+63)/64)
	err := m.walkPagemap(make([]byte, 8<<16), func(p int, e uint64) {
		if e&pmSwapped != 0 || e&(pmPresent|pmFile) == pmPresent {
			bitmap[p/64] |= 1 << (p % 64)
		}
	})
	if err != nil {
		return nil, err
	}
	return bitmap, nil
}
