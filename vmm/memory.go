package vmm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GuestMemory is the guest's RAM: one anonymous host mapping registered
// with KVM at guest-physical address 0. Every access from the VMM goes
// through these bounds-checked methods, since addresses and lengths come
// from the guest.
type GuestMemory struct {
	mem []byte
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
	return m.mem[pa : pa+n : pa+n], nil
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
		return fmt.Errorf("mapping the image into guest memory: %w", errno)
	}
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

// Resident reports how much of the guest's RAM is resident in this
// process (the Rss of its mapping in /proc/self/smaps: pages the guest
// touched and the image's file pages it mapped), so that the VMM's own
// memory can be told apart from the guest's (vmm run --boot-time).
func (m *GuestMemory) Resident() (uint64, error) {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	lo := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(m.mem))))
	hi := lo + uint64(len(m.mem))
	var total uint64
	in := false
	for _, line := range strings.Split(string(smaps), "\n") {
		if start, end, ok := smapsRange(line); ok {
			in = start >= lo && end <= hi
			continue
		}
		if kb, ok := strings.CutPrefix(line, "Rss:"); in && ok {
			n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/smaps: %q: %w", line, err)
			}
			total += n << 10
		}
	}
	return total, nil
}

// smapsRange parses the address range of a mapping's first line in
// /proc/self/smaps ("7f00-7f10 rw-p ...").
func smapsRange(line string) (start, end uint64, ok bool) {
	r, _, found := strings.Cut(line, " ")
	if !found {
		return 0, 0, false
	}
	s, e, found := strings.Cut(r, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(s, 16, 64)
	end, err2 := strconv.ParseUint(e, 16, 64)
	return start, end, err1 == nil && err2 == nil
}

// GuestResident is Resident of the VM's RAM.
func (vm *VM) GuestResident() (uint64, error) { return vm.mem.Resident() }
