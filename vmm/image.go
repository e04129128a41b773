package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/amberos/amber/boot"
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
	lstar    uint64 // kernel.lstarEntry, 0 if unknown
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
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseImage(path, raw)
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
	img := &Image{Path: path, File: f, Entry: f.Entry, raw: raw}
	if err := img.readNotes(); err != nil {
		return nil, err
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz || p.Off+p.Filesz > uint64(len(raw)) || p.Off+p.Filesz < p.Off {
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
	if syms, err := f.Symbols(); err == nil {
		// Assembly functions appear as NAME.abi0 (NAME alone is the Go
		// wrapper around them).
		kernelEntry := uint64(0)
		for _, s := range syms {
			switch s.Name {
			case boot.KernelEntrySym + ".abi0":
				kernelEntry = s.Value
			case boot.KernelPkgPath + ".lstarEntry.abi0":
				img.lstar = s.Value
			}
		}
		if kernelEntry == 0 {
			return nil, fmt.Errorf("%s has no Amber kernel entry (%s): %w", path, boot.KernelEntrySym, ErrNotImage)
		}
		if kernelEntry != img.Entry {
			return nil, fmt.Errorf("%s: entry point %#x is not the kernel's (%#x): %w", path, img.Entry, kernelEntry, ErrNotImage)
		}
	}
	return img, nil
}

// readNotes finds the Amber ABI note that `vmm build` adds.
func (img *Image) readNotes() error {
	found := false
	for _, p := range img.File.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil && err != io.EOF {
			return fmt.Errorf("%s: unreadable note segment: %v: %w", img.Path, err, ErrNotImage)
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
				img.GoVersion = string(bytes.TrimRight(desc[4:], "\x00"))
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

// MinMemory is the least guest RAM this image can boot with: the image,
// plus room for the runtime's first heap arena chunks and stacks.
func (img *Image) MinMemory() uint64 {
	const headroom = 24 << 20
	return (img.End + headroom + (1<<20 - 1)) &^ (1<<20 - 1)
}

// load copies the segments into guest memory.
func (img *Image) load(m *GuestMemory) error {
	for _, p := range img.segments {
		dst, err := m.Slice(p.Paddr, p.Memsz)
		if err != nil {
			return fmt.Errorf("loading %s: %w", img.Path, err)
		}
		copy(dst, img.raw[p.Off:p.Off+p.Filesz])
		clear(dst[p.Filesz:])
	}
	return nil
}
