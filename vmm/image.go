package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/boot/elfnote"
	"golang.org/x/sys/unix"
)

// Image is a bootable Amber image: a statically linked x86-64 ELF
// executable carrying the kernel and its Amber ABI note.
type Image struct {
	Path      string
	File      *elf.File
	Entry     uint64
	GoVersion string
	ABI       uint32
	// End is the first byte past the highest loaded segment.
	End      uint64
	segments []*elf.Prog
	raw      []byte
	lstar    uint64 // kernel.lstarEntry
	note     boot.AmberNote
	notes    []elfnote.Note // all of them, descriptors aliasing raw
	mapped   bool           // raw is an mmap of fd

	// mu guards fd and maps against a lease break (imagelease.go).
	mu sync.Mutex
	// fd is what raw and the guests' read-only segments are mapped from:
	// the image file while the image holds a read lease on it, else a
	// sealed copy (a memfd); -1 if none.
	fd       int
	leased   bool
	leaseErr error     // the break could not take the copy
	maps     []fileMap // the mappings of the leased file
}

// ErrNotImage is wrapped by every error that means "this file is not a
// bootable Amber image".
var ErrNotImage = errors.New("not an Amber image")

// MaxImageSize bounds the image files the VMM accepts. An image is its
// loaded segments (below boot.MaxMemory) plus symbols; the VMM keeps a
// private copy of the whole file while the VM exists.
const MaxImageSize = 1 << 30

// OpenImage reads and validates an image. An image rebuilt, truncated or
// rewritten while its VM runs changes nothing in the VM and cannot fault
// the VMM: the VMM maps the file under a read lease, and copies it before
// anyone may write it (imagelease.go), or, where the file cannot be
// leased, works on a private, sealed copy of the file (a memfd) taken
// here.
func OpenImage(path string) (*Image, error) {
	// O_NONBLOCK: opening a FIFO for reading would wait for a writer.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return nil, fmt.Errorf("%s is a directory, %w (build one with `vmm build`)", path, ErrNotImage)
	case unix.S_IFIFO:
		return nil, fmt.Errorf("%s is a named pipe (FIFO), not an image file: %w", path, ErrNotImage)
	case unix.S_IFCHR, unix.S_IFBLK:
		return nil, fmt.Errorf("%s is a device, not an image file: %w", path, ErrNotImage)
	default:
		return nil, fmt.Errorf("%s is not a regular file: %w", path, ErrNotImage)
	}
	if st.Size == 0 {
		return nil, fmt.Errorf("%s is empty, so it is not an ELF file: %w", path, ErrNotImage)
	}
	if st.Size > MaxImageSize {
		return nil, fmt.Errorf("%s is %d MiB; Amber images are at most %d MiB: %w", path, st.Size>>20, MaxImageSize>>20, ErrNotImage)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	// Not worth a copy if it is not even ELF.
	var magic [4]byte
	if n, _ := unix.Pread(fd, magic[:], 0); n < len(magic) || string(magic[:]) != elf.ELFMAG {
		return nil, fmt.Errorf("%s is not an ELF file: %w", path, ErrNotImage)
	}
	src := fd
	leased := lease(fd)
	if !leased {
		if src, err = snapshot(f, st.Size); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	drop := func() {
		if leased {
			unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		} else {
			unix.Close(src)
		}
	}
	raw, err := unix.Mmap(src, 0, int(st.Size), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		drop()
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	img, err := ParseImage(path, raw)
	if err != nil {
		unix.Munmap(raw)
		drop()
		return nil, err
	}
	img.mapped = true
	if leased {
		// The image keeps the file's descriptor (and the lease on it).
		if src, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			unix.Munmap(raw)
			drop()
			return nil, err
		}
		img.mu.Lock()
		img.leased = true
		img.maps = append(img.maps, fileMap{mem: raw, prot: unix.PROT_READ})
		leasesMu.Lock()
		leases[img] = true
		leasesMu.Unlock()
		img.fd = src
		img.mu.Unlock()
		// A break that came before the image was registered found
		// nothing to do.
		img.checkLease()
		return img, nil
	}
	img.fd = src
	return img, nil
}

// copyFile copies the first size bytes of f to the descriptor dst with
// sendfile (one copy, in the kernel), or through a buffer where sendfile
// cannot.
func copyFile(dst int, f *os.File, size int64) (int64, error) {
	var off int64
	for off < size {
		n, err := unix.Sendfile(dst, int(f.Fd()), &off, int(min(size-off, 1<<30)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if off == 0 {
				return io.Copy(fdWriter(dst), io.LimitReader(f, size))
			}
			return off, err
		}
		if n == 0 {
			break
		}
	}
	return off, nil
}

// fdWriter writes to a descriptor it does not own.
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(w), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// snapshot copies size bytes of f into a sealed memfd: nobody can change
// or shrink it, so mappings of it never fault.
func snapshot(f *os.File, size int64) (int, error) {
	fd, err := unix.MemfdCreate("amber-image", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	m := os.NewFile(uintptr(fd), "amber-image")
	n, err := copyFile(fd, f, size)
	if err == nil && n < size {
		err = fmt.Errorf("the file shrank from %d to %d bytes while being read", size, n)
	}
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	}
	if err != nil {
		m.Close()
		return -1, err
	}
	// m's finalizer must not close the descriptor the image keeps.
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err != nil {
		return -1, err
	}
	return nfd, nil
}

// ParseImage validates an image held in memory.
func ParseImage(path string, raw []byte) (*Image, error) {
	if len(raw) < 4 || !bytes.Equal(raw[:4], []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%s is not an ELF file: %w", path, ErrNotImage)
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: malformed or truncated ELF file (%v): %w", path, err, ErrNotImage)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("%s is a %v %v %v file; Amber images are 64-bit x86-64 executables: %w", path, f.Class, f.Machine, f.Type, ErrNotImage)
	}
	img := &Image{Path: path, File: f, Entry: f.Entry, raw: raw, fd: -1}
	if err := img.readNotes(); err != nil {
		return nil, err
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if _, ok := img.segmentData(p); !ok || p.Filesz > p.Memsz {
			return nil, fmt.Errorf("%s: segment at %#x extends past the end of the file (truncated image?): %w", path, p.Vaddr, ErrNotImage)
		}
		if p.Paddr < boot.ImageBase || p.Paddr+p.Memsz < p.Paddr || p.Paddr+p.Memsz > boot.MaxMemory {
			return nil, fmt.Errorf("%s: segment at %#x-%#x is outside the image area (%#x-%#x): %w", path, p.Paddr, p.Paddr+p.Memsz, boot.ImageBase, boot.MaxMemory, ErrNotImage)
		}
		img.segments = append(img.segments, p)
		if e := p.Paddr + p.Memsz; e > img.End {
			img.End = e
		}
	}
	if len(img.segments) == 0 {
		return nil, fmt.Errorf("%s has no loadable segments: %w", path, ErrNotImage)
	}
	if img.Entry < boot.ImageBase || img.Entry >= img.End {
		return nil, fmt.Errorf("%s: entry point %#x is outside the image: %w", path, img.Entry, ErrNotImage)
	}
	if img.Entry != img.note.Entry {
		return nil, fmt.Errorf("%s: entry point %#x is not the kernel's (%#x): %w", path, img.Entry, img.note.Entry, ErrNotImage)
	}
	img.lstar = img.note.LSTAR
	return img, nil
}

// readNotes reads the image's notes (boot/elfnote) and finds the Amber
// ABI note that `vmm build` adds.
func (img *Image) readNotes() error {
	found := false
	for _, p := range img.File.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, ok := img.segmentData(p)
		if !ok {
			return fmt.Errorf("%s: note segment at file offset %#x, %d bytes, extends past the end of the file (%d bytes): %w", img.Path, p.Off, p.Filesz, len(img.raw), ErrNotImage)
		}
		notes, err := elfnote.Parse(data, elfnote.Align(p.Align))
		if err != nil {
			return fmt.Errorf("%s: malformed ELF note: %v: %w", img.Path, err, ErrNotImage)
		}
		img.notes = append(img.notes, notes...)
	}
	for _, n := range img.notes {
		if n.Name == boot.NoteNameAmber && n.Type == boot.NoteTypeABI && len(n.Desc) >= 4 {
			img.ABI = binary.LittleEndian.Uint32(n.Desc)
			k, err := binary.Decode(n.Desc, binary.LittleEndian, &img.note)
			if err == nil {
				img.GoVersion = string(bytes.TrimRight(n.Desc[k:], "\x00"))
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s has no Amber kernel (no Amber ELF note): build it with `vmm build`: %w", img.Path, ErrNotImage)
	}
	if img.ABI != boot.ABIVersion {
		return fmt.Errorf("%s was built for Amber boot ABI v%d (Go %s) but this vmm speaks v%d: rebuild it with this vmm's `vmm build`: %w",
			img.Path, img.ABI, img.GoVersion, boot.ABIVersion, ErrNotImage)
	}
	return nil
}

// segmentData returns the file bytes of a segment, with its offset and
// size checked against the file's size (they come from the file).
func (img *Image) segmentData(p *elf.Prog) ([]byte, bool) {
	size := uint64(len(img.raw))
	if p.Off > size || p.Filesz > size-p.Off {
		return nil, false
	}
	return img.raw[p.Off : p.Off+p.Filesz : p.Off+p.Filesz], true
}

// MinMemory is the least guest RAM this image can boot with: the image
// (with the 2 MiB below it) plus what the Go runtime touches while it
// starts, measured with hello (docs/benchmarks.md, "Least memory"): its
// 4 MiB first heap chunk and its metadata are mapped lazily while it
// starts (kernel/mem.go), so what counts is the ~1.5 MiB of them it
// touches, the page tables and the first kernel stack. The result is a
// multiple of 2 MiB, as --mem must be.
func (img *Image) MinMemory() uint64 {
	const headroom = 2 << 20
	return (img.End + headroom + (2<<20 - 1)) &^ (2<<20 - 1)
}

// Close releases the image's file mapping, and the lease on its file.
func (img *Image) Close() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	var errs []error
	if img.leased {
		unix.FcntlInt(uintptr(img.fd), unix.F_SETLEASE, unix.F_UNLCK)
		leasesMu.Lock()
		delete(leases, img)
		leasesMu.Unlock()
		img.leased, img.maps = false, nil
	}
	if img.mapped && img.raw != nil {
		errs = append(errs, unix.Munmap(img.raw))
	}
	img.raw, img.mapped = nil, false
	if img.fd >= 0 {
		errs = append(errs, unix.Close(img.fd))
		img.fd = -1
	}
	return errors.Join(errs...)
}

// load puts the segments into fresh (all-zero) guest memory. Whole pages
// of read-only segments are mapped from the snapshot copy-on-write (no
// copy, and pages the guest never reads cost nothing); the rest is copied,
// and the bss needs no clearing.
func (img *Image) load(m *GuestMemory) error {
	for _, p := range img.segments {
		dst, err := m.Slice(p.Paddr, p.Memsz)
		if err != nil {
			return fmt.Errorf("loading %s: %w", img.Path, err)
		}
		src := img.raw[p.Off : p.Off+p.Filesz]
		// Only read-only segments: guest writes to a file-backed page take
		// a copy-on-write fault that costs more than the copy here.
		if img.fd >= 0 && p.Flags&elf.PF_W == 0 && p.Off%boot.PageSize == p.Paddr%boot.PageSize {
			head := (boot.PageSize - p.Paddr%boot.PageSize) % boot.PageSize
			if head < p.Filesz {
				n := (p.Filesz - head) &^ (boot.PageSize - 1)
				if n > 0 {
					if err := img.mapGuest(m, p.Paddr+head, n, int64(p.Off+head)); err != nil {
						return fmt.Errorf("loading %s: %w", img.Path, err)
					}
					copy(dst[:head], src[:head])
					copy(dst[head+n:], src[head+n:])
					continue
				}
			}
		}
		copy(dst, src)
	}
	return nil
}
