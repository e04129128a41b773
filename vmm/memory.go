package vmm

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GuestMemory is the guest's RAM: one anonymous host mapping registered
// with KVM at guest-physical address 0. Every access from the VMM goes
// through these bounds-checked methods, since addresses and lengths come
// from the guest.
type GuestMemory struct {
	mem []byte
	// fileRanges are the ranges [pa, pa+n) mapped from a file (mapFile):
	// their pages hold the file's data before anything touches them.
	fileRanges [][2]uint64
	// logging makes Slice record the pages it hands out in written, as
	// possibly written by the VMM (devices, hypercalls): KVM's dirty log
	// has only the guest's own writes, and an incremental snapshot needs
	// both.
	logging atomic.Bool
	written []uint64
}

func newGuestMemory(size uint64) (*GuestMemory, error) {
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("allocating %d MiB of guest memory: %w", size>>20, err)
	}
	return &GuestMemory{mem: b}, nil
}

// Size is the amount of guest RAM in bytes.
func (m *GuestMemory) Size() uint64 { return uint64(len(m.mem)) }

// Slice returns the guest bytes [pa, pa+n), or an error if any of them lie
// outside guest RAM.
func (m *GuestMemory) Slice(pa, n uint64) ([]byte, error) {
	if pa > uint64(len(m.mem)) || n > uint64(len(m.mem))-pa {
		return nil, fmt.Errorf("guest physical range [%#x, %#x) is outside guest memory (%#x bytes)", pa, pa+n, len(m.mem))
	}
	if m.logging.Load() && n > 0 {
		for p := pa / pageSize; p <= (pa+n-1)/pageSize; p++ {
			atomic.OrUint64(&m.written[p/64], 1<<(p%64))
		}
	}
	return m.mem[pa : pa+n : pa+n], nil
}

// pageSize is the unit of the dirty bitmaps.
const pageSize = 4096

// logWrites starts recording the pages Slice hands out.
func (m *GuestMemory) logWrites() {
	if m.written == nil {
		m.written = make([]uint64, (len(m.mem)/pageSize+63)/64)
	}
	m.logging.Store(true)
}

// takeWritten ORs the pages handed out since the last call into bitmap
// and forgets them.
func (m *GuestMemory) takeWritten(bitmap []uint64) {
	for i := range m.written {
		bitmap[i] |= atomic.SwapUint64(&m.written[i], 0)
	}
}

// ReadPhys copies guest memory at pa into p (crash.PhysMemory).
func (m *GuestMemory) ReadPhys(pa uint64, p []byte) error {
	s, err := m.Slice(pa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// WritePhys copies p into guest memory at pa.
func (m *GuestMemory) WritePhys(pa uint64, p []byte) error {
	s, err := m.Slice(pa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// mapFile replaces guest memory [pa, pa+n) with a private (copy-on-write)
// mapping of the file range at off. pa, n and off are page-aligned.
func (m *GuestMemory) mapFile(pa, n uint64, fd int, off int64) error {
	s, err := m.Slice(pa, n)
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(&s[0])), uintptr(n),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED, uintptr(fd), uintptr(off))
	if errno != 0 {
		return fmt.Errorf("mapping a file into guest memory: %w", errno)
	}
	m.fileRanges = append(m.fileRanges, [2]uint64{pa, n})
	return nil
}

func (m *GuestMemory) close() error {
	if m.mem == nil {
		return nil
	}
	err := unix.Munmap(m.mem)
	m.mem = nil
	return err
}

// touchedPages returns a bitmap of the pages of guest memory that may be
// non-zero: those the host has ever backed (present, or swapped out, from
// /proc/self/pagemap) and those mapped from a file (mapFile: the image's
// read-only segments, a restored snapshot), which hold the file's data
// untouched. Every other page is anonymous memory never touched: zero,
// and reading it would only map the zero page, one fault per page.
func (m *GuestMemory) touchedPages() ([]uint64, error) {
	ps := uint64(os.Getpagesize())
	bitmap := make([]uint64, (uint64(len(m.mem))/ps+63)/64)
	err := m.walkPagemap(make([]byte, 8<<16), func(p int, e uint64) {
		if e&(pmPresent|pmSwapped) != 0 {
			bitmap[p/64] |= 1 << (p % 64)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, r := range m.fileRanges {
		for p := r[0] / ps; p < (r[0]+r[1])/ps; p++ {
			bitmap[p/64] |= 1 << (p % 64)
		}
	}
	return bitmap, nil
}

// Resident reports how much of the guest's RAM is resident in this
// process (pages present in /proc/self/pagemap: those the guest touched
// and the image's file pages it mapped), so that the VMM's own memory can
// be told apart from the guest's (vmm run --boot-time). Pagemap rather
// than smaps: the kernel merges the guest's mapping with neighbouring
// anonymous ones, whose Rss smaps cannot split.
func (m *GuestMemory) Resident() (uint64, error) {
	var n uint64
	err := m.walkPagemap(make([]byte, 8<<16), func(_ int, e uint64) {
		if e&pmPresent != 0 {
			n++
		}
	})
	return n * uint64(os.Getpagesize()), err
}

// pagemap flags (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent   = 1 << 63
	pmSwapped   = 1 << 62
	pmFile      = 1 << 61 // a file page or shared anonymous memory
	pmExclusive = 1 << 56 // mapped exactly once
)

// walkPagemap calls fn with each page of guest memory (its index) and its
// /proc/self/pagemap entry, reading len(buf)/8 entries at a time: the
// caller sizes buf (a measurement of memory reads through a small one).
func (m *GuestMemory) walkPagemap(buf []byte, fn func(page int, entry uint64)) error {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return err
	}
	defer f.Close()
	ps := os.Getpagesize()
	pages := len(m.mem) / ps
	first := uintptr(unsafe.Pointer(&m.mem[0])) / uintptr(ps)
	chunk := len(buf) / 8
	for p := 0; p < pages; p += chunk {
		n := min(chunk, pages-p)
		if _, err := f.ReadAt(buf[:8*n], int64(first+uintptr(p))*8); err != nil {
			return fmt.Errorf("reading /proc/self/pagemap: %w", err)
		}
		for i := range n {
			fn(p+i, binary.LittleEndian.Uint64(buf[8*i:]))
		}
	}
	return nil
}

// GuestResident is Resident of the VM's RAM.
func (vm *VM) GuestResident() (uint64, error) { return vm.mem.Resident() }
