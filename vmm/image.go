package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/amberos/amber/boot"
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
	mapped   bool // raw is an mmap of the file
	fd       int  // the file, for mapping segments into guest memory; -1 if none
}

// ErrNotImage is wrapped by every error that means "this file is not a
// bootable Amber image".
var ErrNotImage = errors.New("not an Amber image")

// OpenImage reads and validates an image.
func OpenImage(path string) (*Image, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, %w (build one with `vmm build`)", path, ErrNotImage)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() == 0 {
		return nil, fmt.Errorf("%s is empty, so it is not an ELF file: %w", path, ErrNotImage)
	}
	// Map the file rather than read it: the VMM needs only the headers
	// and the loaded segments, and the page cache already holds them.
	raw, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	img, err := ParseImage(path, raw)
	if err != nil {
		unix.Munmap(raw)
		return nil, err
	}
	img.mapped = true
	img.fd, err = unix.Dup(int(f.Fd()))
	if err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
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

// readNotes finds the Amber ABI note that `vmm build` adds.
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
		for len(data) >= 12 {
			namesz := uint64(binary.LittleEndian.Uint32(data[0:]))
			descsz := uint64(binary.LittleEndian.Uint32(data[4:]))
			typ := binary.LittleEndian.Uint32(data[8:])
			nameEnd := 12 + (namesz+3)&^3
			descEnd := nameEnd + (descsz+3)&^3
			if namesz > uint64(len(data)) || descsz > uint64(len(data)) || descEnd > uint64(len(data)) {
				return fmt.Errorf("%s: malformed ELF note: %w", img.Path, ErrNotImage)
			}
			name := string(bytes.TrimRight(data[12:12+namesz], "\x00"))
			desc := data[nameEnd : nameEnd+descsz]
			if name == boot.NoteNameAmber && typ == boot.NoteTypeABI && len(desc) >= 4 {
				img.ABI = binary.LittleEndian.Uint32(desc)
				n, err := binary.Decode(desc, binary.LittleEndian, &img.note)
				if err == nil {
					img.GoVersion = string(bytes.TrimRight(desc[n:], "\x00"))
				}
				found = true
			}
			data = data[descEnd:]
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

// MinMemory is the least guest RAM this image can boot with: the image,
// plus room for the runtime's first heap arena chunks and stacks.
func (img *Image) MinMemory() uint64 {
	const headroom = 24 << 20
	return (img.End + headroom + (1<<20 - 1)) &^ (1<<20 - 1)
}

// Close releases the image's file mapping.
func (img *Image) Close() error {
	var errs []error
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
// of read-only segments are mapped from the file copy-on-write, so VMs
// share the page cache; the rest is copied, and the bss needs no clearing.
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
					if err := m.mapFile(p.Paddr+head, n, img.fd, int64(p.Off+head)); err != nil {
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
