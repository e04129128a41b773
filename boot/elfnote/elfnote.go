// Package elfnote reads ELF notes: the one reader of the notes that `vmm
// build` adds (the Amber ABI note, the Xen PVH entry note) and that the
// VMM and the builder's checks look for. It is host code; the kernel
// never reads its own notes.
package elfnote

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
)

// Note is one ELF note: the owner's name (without the terminating NUL),
// the owner-defined type, and the descriptor bytes.
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

// MaxSegment bounds what Read reads from one PT_NOTE segment, so a hostile
// header cannot make it allocate gigabytes.
const MaxSegment = 16 << 20

// Align is the padding of notes in a segment with alignment a: 8 for
// segments aligned to 8 (GNU property notes), 4 for all others.
func Align(a uint64) uint64 {
	if a == 8 {
		return 8
	}
	return 4
}

// Parse returns the notes in buf, the contents of one note segment or
// section whose notes are padded to align bytes. Descriptors alias buf. A
// note whose header, name or descriptor runs past the end is an error
// naming its offset; the last note's trailing padding may be missing.
func Parse(buf []byte, align uint64) ([]Note, error) {
	var notes []Note
	roundUp := func(x uint64) uint64 { return (x + align - 1) &^ (align - 1) }
	le := func(b []byte) uint64 { return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 }
	for off := uint64(0); off < uint64(len(buf)); {
		rest := buf[off:]
		if len(rest) < 12 {
			return nil, fmt.Errorf("note header at offset %#x truncated (%d bytes left)", off, len(rest))
		}
		namesz, descsz, typ := le(rest[0:]), le(rest[4:]), uint32(le(rest[8:]))
		descOff := roundUp(12 + namesz) // gABI: the descriptor is aligned in the segment
		end := descOff + descsz
		if end > uint64(len(rest)) {
			return nil, fmt.Errorf("note at offset %#x truncated: name %d and descriptor %d bytes need %d, %d left",
				off, namesz, descsz, end, len(rest))
		}
		name := rest[12 : 12+namesz]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		notes = append(notes, Note{Name: string(name), Type: typ, Desc: rest[descOff:end:end]})
		off += min(roundUp(end), uint64(len(rest)))
	}
	return notes, nil
}

// Read returns the notes of every PT_NOTE segment of f, in file order,
// with descriptors of their own.
func Read(f *elf.File) ([]Note, error) {
	var notes []Note
	for i, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz == 0 {
			continue
		}
		if p.Filesz > MaxSegment {
			return nil, fmt.Errorf("PT_NOTE segment %d: size %d is implausibly large", i, p.Filesz)
		}
		buf := make([]byte, p.Filesz)
		if _, err := io.ReadFull(p.Open(), buf); err != nil {
			return nil, fmt.Errorf("PT_NOTE segment %d at file offset %#x: %w", i, p.Off, err)
		}
		ns, err := Parse(buf, Align(p.Align))
		if err != nil {
			return nil, fmt.Errorf("PT_NOTE segment %d at file offset %#x: %w", i, p.Off, err)
		}
		notes = append(notes, ns...)
	}
	return notes, nil
}
