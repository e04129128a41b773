package vmm

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An image is mapped from its file, not copied, when the VMM can hold a
// read lease on the file (F_SETLEASE; the file's owner or CAP_LEASE, a
// file system with leases, nobody writing the file): nobody can then
// open the file for writing or truncate it without the kernel first
// telling this process (SIGIO) and holding the writer back until the
// lease is released, for up to /proc/sys/fs/lease-break-time seconds. On
// that signal the image takes the sealed copy it would otherwise have
// taken at open (snapshot), moves every mapping of the file onto the
// copy, and only then releases the lease: what the VMs see never changes.
// `vmm build` replaces an image by renaming a new file over it, which
// leaves the open file as it was and breaks no lease.
//
// A mapping moved onto the copy keeps the pages a guest wrote (copied on
// write, so the file's changes cannot reach them anyway); a page the guest
// writes at the very moment its mapping moves loses that write. Only the
// image's read-only segments are mapped from the file, so only a guest
// writing into its own code or read-only data could see that.

// leaseImages turns the lease off, for measuring what the copy costs.
var leaseImages = true

var (
	leaseOnce sync.Once
	leasesMu  sync.Mutex
	leases    = map[*Image]bool{} // images holding a lease
)

// fileMap is one mapping of the image's file: its address, length, offset
// in the file and protection; guest says it is guest memory (whose pages
// a guest may have written).
type fileMap struct {
	mem   []byte
	off   int64
	prot  int
	guest bool
}

// lease takes a read lease on the image file fd and watches for its
// break. It reports false when the file cannot be leased: the caller
// copies it then.
func lease(fd int) bool {
	if !leaseImages {
		return false
	}
	leaseOnce.Do(func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGIO)
		go watchLeases(c)
	})
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		return false
	}
	// The break's signal goes to this process, whichever thread took it.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETOWN, unix.Getpid()); err != nil {
		unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		return false
	}
	return true
}

// watchLeases serves the breaks: a SIGIO says some lease is being broken,
// not which.
func watchLeases(c chan os.Signal) {
	for range c {
		leasesMu.Lock()
		imgs := make([]*Image, 0, len(leases))
		for img := range leases {
			imgs = append(imgs, img)
		}
		leasesMu.Unlock()
		for _, img := range imgs {
			img.checkLease()
		}
	}
}

// checkLease moves the image onto a private copy if its lease is being
// broken.
func (img *Image) checkLease() {
	img.mu.Lock()
	defer img.mu.Unlock()
	if !img.leased {
		return
	}
	if t, err := unix.FcntlInt(uintptr(img.fd), unix.F_GETLEASE, 0); err == nil && t == unix.F_RDLCK {
		return
	}
	img.leaseErr = img.unleaseLocked()
}

// unleaseLocked copies the file, moves the mappings onto the copy and
// releases the lease.
func (img *Image) unleaseLocked() error {
	snap := -1
	dfd, err := unix.FcntlInt(uintptr(img.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		f := os.NewFile(uintptr(dfd), img.Path)
		snap, err = snapshot(f, int64(len(img.raw)))
		f.Close()
	}
	if err == nil {
		for _, m := range img.maps {
			if err = remap(m, snap); err != nil {
				break
			}
		}
	}
	if err != nil {
		if snap >= 0 {
			unix.Close(snap)
		}
		// The lease goes anyway (the kernel breaks it when its time is
		// up): the file is used as it is.
		err = fmt.Errorf("%s is being rewritten in place, and the VMM could not keep its own copy of it: %w", img.Path, err)
	}
	unix.FcntlInt(uintptr(img.fd), unix.F_SETLEASE, unix.F_UNLCK)
	leasesMu.Lock()
	delete(leases, img)
	leasesMu.Unlock()
	img.leased, img.maps = false, nil
	if err != nil {
		return err
	}
	unix.Close(img.fd)
	img.fd = snap
	return nil
}

// remap maps m's pages from fd (at the same offsets) over the file's.
// Pages of guest memory the guest wrote (copies of the file's pages) keep
// their contents: truncating the file would unmap them too. The new
// mapping is made elsewhere, given those pages, and moved over the old
// one in one step (mremap), so the guest never sees a page missing.
func remap(m fileMap, fd int) error {
	addr, n := uintptr(unsafe.Pointer(&m.mem[0])), uintptr(len(m.mem))
	if !m.guest {
		_, _, errno := unix.Syscall6(unix.SYS_MMAP, addr, n, uintptr(m.prot), unix.MAP_PRIVATE|unix.MAP_FIXED, uintptr(fd), uintptr(m.off))
		if errno != 0 {
			return fmt.Errorf("mapping the image's copy: %w", errno)
		}
		return nil
	}
	pages := len(m.mem) / pageSize
	entries := make([]byte, 8*pages)
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return err
	}
	_, err = pm.ReadAt(entries, int64(addr/pageSize*8))
	pm.Close()
	if err != nil {
		return fmt.Errorf("reading /proc/self/pagemap: %w", err)
	}
	tmp, err := unix.Mmap(fd, m.off, len(m.mem), m.prot, unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("mapping the image's copy: %w", err)
	}
	for i := range pages {
		// Present and not a file page (bit 61): a copy the guest wrote.
		if e := binary.LittleEndian.Uint64(entries[8*i:]); e&(1<<63) != 0 && e&(1<<61) == 0 {
			copy(tmp[i*pageSize:(i+1)*pageSize], m.mem[i*pageSize:])
		}
	}
	if _, _, errno := unix.Syscall6(unix.SYS_MREMAP, uintptr(unsafe.Pointer(&tmp[0])), n, n, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, addr, 0); errno != 0 {
		unix.Munmap(tmp)
		return fmt.Errorf("moving the image's copy into guest memory: %w", errno)
	}
	return nil
}

// Copied reports whether the VMM works on a copy of the image file (taken
// at open where the file could not be leased, or when the lease broke)
// rather than on the file itself.
func (img *Image) Copied() bool {
	img.mu.Lock()
	defer img.mu.Unlock()
	return !img.leased
}

// mapGuest maps the image file range at off over guest memory [pa, pa+n)
// and records the mapping, to move it if the lease breaks.
func (img *Image) mapGuest(m *GuestMemory, pa, n uint64, off int64) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := m.mapFile(pa, n, img.fd, off); err != nil {
		return err
	}
	if img.leased {
		img.maps = append(img.maps, fileMap{mem: m.mem[pa : pa+n], off: off, prot: unix.PROT_READ | unix.PROT_WRITE, guest: true})
	}
	return nil
}

// forget drops the mappings of the image in m: m is about to be unmapped.
func (img *Image) forget(m *GuestMemory) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if len(m.mem) == 0 {
		return
	}
	lo := uintptr(unsafe.Pointer(&m.mem[0]))
	hi := lo + uintptr(len(m.mem))
	maps := img.maps[:0]
	for _, fm := range img.maps {
		if a := uintptr(unsafe.Pointer(&fm.mem[0])); a < lo || a >= hi {
			maps = append(maps, fm)
		}
	}
	img.maps = maps
}
