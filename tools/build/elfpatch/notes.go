package elfpatch

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/amberos/amber/boot/elfnote"
)

// Note is one ELF note (boot/elfnote).
type Note = elfnote.Note

// ErrNoteExists is returned (wrapped) by AddNotes when the file already has a
// note with the same name and type as one being added. AddNotes is therefore
// not idempotent on purpose: a second PVH entry note would be ambiguous, and a
// build that patches twice has a bug worth hearing about.
var ErrNoteExists = errors.New("note already present")

// ErrNotGoExecutable is returned (wrapped) by AddNotes for files that are not
// statically linked Go amd64 ELF executables. The layout assumptions below
// (header page reserved by the Go linker, section headers inside it) only
// hold for those.
var ErrNotGoExecutable = errors.New("not a Go linux/amd64 ELF executable")

const (
	ehdrSize  = 64
	phdrSize  = 56
	shdrSize  = 64
	noteAlign = 4
)

// Offsets of the ELF64 header fields we edit.
const (
	offPhoff    = 0x20
	offShoff    = 0x28
	offPhentsz  = 0x36
	offPhnum    = 0x38
	offShentsz  = 0x3a
	offShnum    = 0x3c
	offShstrndx = 0x3e
)

var le = binary.LittleEndian

// AddNotes adds notes to the Go executable at path, in place, in one new
// PT_NOTE segment. Notes with the same name are kept together and described by
// one SHT_NOTE section named ".note.<name>" (lower case, as GNU and Go name
// theirs, except "Xen", whose section is conventionally ".note.Xen").
//
// The Go linker reserves the first 4 KiB of the file (mapped by the first
// PT_LOAD) for the ELF header, the program headers and the section headers,
// and places its own notes at the end of that page. AddNotes moves the section
// header table to the end of the file, which frees room for one more program
// header, and puts the notes in the free part of the header page, so they are
// in guest memory too (where a PVH loader may look for them). Notes too big
// for the page are appended to the end of the file instead; they are then in
// the file only (their PT_NOTE has p_vaddr and p_memsz 0). No loaded byte
// moves, so the result runs as before.
//
// It fails with ErrNoteExists if a note with the same name and type is
// already present (calling it twice with the same notes is an error), and
// with ErrNotGoExecutable if the file is not a Go linux/amd64 executable. The
// new contents are written to a temporary file that is renamed over path, so
// on any error the original file is unchanged.
func AddNotes(path string, notes []Note) error {
	if len(notes) == 0 {
		return fmt.Errorf("elfpatch: %s: no notes to add", path)
	}
	for i, n := range notes {
		if n.Name == "" || strings.IndexByte(n.Name, 0) >= 0 {
			return fmt.Errorf("elfpatch: note %d: name %q must be non-empty and contain no NUL", i, n.Name)
		}
		if uint64(len(n.Name))+1 > math.MaxUint32 || uint64(len(n.Desc)) > math.MaxUint32 {
			return fmt.Errorf("elfpatch: note %d (%s): too large", i, n.Name)
		}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("elfpatch: %w", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("elfpatch: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("elfpatch: %s: not a regular file", path)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return fmt.Errorf("elfpatch: %w", err)
	}
	out, err := addNotes(data, notes)
	if err != nil {
		return fmt.Errorf("elfpatch: %s: %w", path, err)
	}
	if err := replaceFile(real, out, st.Mode().Perm()); err != nil {
		return fmt.Errorf("elfpatch: %s: %w", path, err)
	}
	return nil
}

// replaceFile writes data next to path and renames it over path, so readers
// (and a crash) see either the old or the new file, never a half-written one.
func replaceFile(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".elfpatch-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// interval is a half-open byte range [lo, hi) of the file.
type interval struct{ lo, hi uint64 }

func (a interval) overlaps(b interval) bool { return a.lo < b.hi && b.lo < a.hi }

// addNotes returns a copy of the executable image data with notes added.
func addNotes(data []byte, notes []Note) ([]byte, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotGoExecutable, err)
	}
	if err := checkGoExecutable(f, data); err != nil {
		return nil, err
	}
	existing, err := ReadNotes(f)
	if err != nil {
		return nil, err
	}
	for _, n := range notes {
		for _, e := range existing {
			if e.Name == n.Name && e.Type == n.Type {
				return nil, fmt.Errorf("%w: %s type %d (already patched?)", ErrNoteExists, n.Name, n.Type)
			}
		}
	}

	phoff := le.Uint64(data[offPhoff:])
	phnum := uint64(le.Uint16(data[offPhnum:]))
	shoff := le.Uint64(data[offShoff:])
	shnum := uint64(le.Uint16(data[offShnum:]))
	shstrndx := uint64(le.Uint16(data[offShstrndx:]))
	if phnum+1 >= 0xffff { // PN_XNUM: extended numbering is not supported
		return nil, fmt.Errorf("too many program headers (%d)", phnum)
	}
	groups := groupNotes(notes)
	if shnum+uint64(len(groups)) >= uint64(elf.SHN_LORESERVE) {
		return nil, fmt.Errorf("too many section headers (%d)", shnum)
	}

	// Everything in the file that must not be overwritten, except the
	// program and section header tables, which we rewrite.
	occupied := []interval{{0, ehdrSize}}
	for _, s := range f.Sections {
		// FileSize, not Size: debug sections are compressed.
		if s.Type != elf.SHT_NULL && s.Type != elf.SHT_NOBITS && s.FileSize > 0 {
			occupied = append(occupied, interval{s.Offset, s.Offset + s.FileSize})
		}
	}
	var firstLoad *elf.Prog
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if firstLoad == nil && p.Off == 0 {
				firstLoad = p
			}
		case elf.PT_PHDR:
		default:
			if p.Filesz > 0 {
				occupied = append(occupied, interval{p.Off, p.Off + p.Filesz})
			}
		}
	}
	if firstLoad == nil {
		return nil, fmt.Errorf("%w: no PT_LOAD maps the ELF header", ErrNotGoExecutable)
	}
	newPh := interval{phoff, phoff + (phnum+1)*phdrSize}
	if newPh.hi > firstLoad.Off+firstLoad.Filesz {
		return nil, fmt.Errorf("program headers at %#x would extend beyond the first PT_LOAD", phoff)
	}
	oldSh := interval{shoff, shoff + shnum*shdrSize}
	for _, o := range occupied {
		if o.overlaps(oldSh) {
			return nil, fmt.Errorf("section header table at %#x overlaps file bytes %#x-%#x", shoff, o.lo, o.hi)
		}
	}
	if oldSh.hi == uint64(len(data)) && oldSh.lo < newPh.hi {
		return nil, fmt.Errorf("section header table at %#x overlaps the program headers", shoff)
	}
	for _, o := range occupied {
		if o.overlaps(newPh) {
			return nil, fmt.Errorf("no room for another program header at %#x (file bytes %#x-%#x are in use)", newPh.hi-phdrSize, o.lo, o.hi)
		}
	}

	out := make([]byte, len(data), len(data)+64<<10)
	copy(out, data)

	// Free the old section header table: drop it if it ends the file (a
	// previously patched file), otherwise clear it so no stale copy remains.
	shdrs := make([]byte, oldSh.hi-oldSh.lo, (shnum+uint64(len(groups)))*shdrSize)
	copy(shdrs, data[oldSh.lo:oldSh.hi])
	if oldSh.hi == uint64(len(out)) {
		out = out[:oldSh.lo]
	} else {
		clear(out[oldSh.lo:oldSh.hi])
	}

	// Encode the notes, grouped by name; each group becomes one section.
	var blob []byte
	groupOff := make([]uint64, len(groups))
	for i, g := range groups {
		groupOff[i] = uint64(len(blob))
		for _, n := range g {
			blob = appendNote(blob, n)
		}
	}
	size := uint64(len(blob))

	// Place the blob as high as possible in the gap after the program
	// headers, so that a later call still finds room for its own program
	// header; it must stay inside the first PT_LOAD to be in memory.
	var noteOff uint64
	inMemory := false
	limit := firstLoad.Off + firstLoad.Filesz
	for _, o := range occupied {
		if o.lo >= newPh.hi && o.lo < limit {
			limit = o.lo
		}
	}
	if limit >= newPh.hi+size {
		noteOff = (limit - size) &^ (noteAlign - 1)
		inMemory = noteOff >= newPh.hi
	}
	if inMemory {
		copy(out[noteOff:], blob)
	}

	// .shstrtab: extend in place if it ends the file, otherwise move a copy
	// to the end.
	if shstrndx == 0 || shstrndx >= shnum {
		return nil, fmt.Errorf("no section name table")
	}
	strSh := shdrs[shstrndx*shdrSize:]
	strOff, strSize := le.Uint64(strSh[0x18:]), le.Uint64(strSh[0x20:])
	strtab := data[strOff : strOff+strSize] // bounds checked by checkGoExecutable
	if strOff+strSize != uint64(len(out)) {
		strOff = uint64(len(out))
		out = append(out, strtab...)
	}
	nameOff := make([]uint64, len(groups))
	for i, g := range groups {
		nameOff[i] = uint64(len(out)) - strOff
		out = append(out, sectionName(g[0].Name)...)
		out = append(out, 0)
	}
	le.PutUint64(strSh[0x18:], strOff)
	le.PutUint64(strSh[0x20:], uint64(len(out))-strOff)
	if uint64(len(out))-strOff > math.MaxUint32 {
		return nil, fmt.Errorf("section name table too large")
	}

	if !inMemory {
		out = pad(out, 8)
		noteOff = uint64(len(out))
		out = append(out, blob...)
	}
	var vaddr, paddr uint64
	flags := uint64(0)
	if inMemory {
		vaddr = firstLoad.Vaddr + noteOff - firstLoad.Off
		paddr = firstLoad.Paddr + noteOff - firstLoad.Off
		flags = uint64(elf.SHF_ALLOC)
	}

	for i := range groups {
		end := size
		if i+1 < len(groups) {
			end = groupOff[i+1]
		}
		var sh [shdrSize]byte
		le.PutUint32(sh[0x00:], uint32(nameOff[i]))
		le.PutUint32(sh[0x04:], uint32(elf.SHT_NOTE))
		le.PutUint64(sh[0x08:], flags)
		if inMemory {
			le.PutUint64(sh[0x10:], vaddr+groupOff[i])
		}
		le.PutUint64(sh[0x18:], noteOff+groupOff[i])
		le.PutUint64(sh[0x20:], end-groupOff[i])
		le.PutUint64(sh[0x30:], noteAlign)
		shdrs = append(shdrs, sh[:]...)
	}
	out = pad(out, 8)
	le.PutUint64(out[offShoff:], uint64(len(out)))
	le.PutUint16(out[offShnum:], uint16(shnum+uint64(len(groups))))
	out = append(out, shdrs...)

	// The new program header, and PT_PHDR grown to cover it.
	ph := out[newPh.hi-phdrSize : newPh.hi]
	le.PutUint32(ph[0x00:], uint32(elf.PT_NOTE))
	le.PutUint32(ph[0x04:], uint32(elf.PF_R))
	le.PutUint64(ph[0x08:], noteOff)
	le.PutUint64(ph[0x10:], vaddr)
	le.PutUint64(ph[0x18:], paddr)
	le.PutUint64(ph[0x20:], size)
	if inMemory {
		le.PutUint64(ph[0x28:], size)
	} else {
		le.PutUint64(ph[0x28:], 0)
	}
	le.PutUint64(ph[0x30:], noteAlign)
	le.PutUint16(out[offPhnum:], uint16(phnum+1))
	for i := uint64(0); i < phnum; i++ {
		p := out[phoff+i*phdrSize:]
		if elf.ProgType(le.Uint32(p)) == elf.PT_PHDR {
			le.PutUint64(p[0x20:], (phnum+1)*phdrSize)
			le.PutUint64(p[0x28:], (phnum+1)*phdrSize)
		}
	}
	return out, nil
}

// checkGoExecutable verifies the assumptions addNotes makes about the raw
// layout, beyond what debug/elf has already checked.
func checkGoExecutable(f *elf.File, data []byte) error {
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%w: %v %v %v", ErrNotGoExecutable, f.Class, f.Data, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("%w: type %v (only statically linked, non-PIE executables are supported)", ErrNotGoExecutable, f.Type)
	}
	if f.Section(".go.buildinfo") == nil && f.Section(".gopclntab") == nil {
		return fmt.Errorf("%w: no .go.buildinfo or .gopclntab section", ErrNotGoExecutable)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%w: dynamically linked", ErrNotGoExecutable)
		}
	}
	if le.Uint16(data[offPhentsz:]) != phdrSize || le.Uint16(data[offShentsz:]) != shdrSize {
		return fmt.Errorf("%w: unexpected program/section header sizes", ErrNotGoExecutable)
	}
	n := uint64(len(data))
	phoff, phnum := le.Uint64(data[offPhoff:]), uint64(le.Uint16(data[offPhnum:]))
	shoff, shnum := le.Uint64(data[offShoff:]), uint64(le.Uint16(data[offShnum:]))
	if phoff < ehdrSize || phoff > n || phnum*phdrSize > n-phoff {
		return fmt.Errorf("%w: program headers outside the file", ErrNotGoExecutable)
	}
	if shnum == 0 || shoff < ehdrSize || shoff > n || shnum*shdrSize > n-shoff {
		return fmt.Errorf("%w: section headers missing or outside the file", ErrNotGoExecutable)
	}
	strndx := uint64(le.Uint16(data[offShstrndx:]))
	if strndx == 0 || strndx >= shnum || f.Sections[strndx].Type != elf.SHT_STRTAB {
		return fmt.Errorf("%w: no section name table", ErrNotGoExecutable)
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && (s.Offset > n || s.FileSize > n-s.Offset) {
			return fmt.Errorf("%w: section %s outside the file", ErrNotGoExecutable, s.Name)
		}
	}
	for _, p := range f.Progs {
		if p.Off > n || p.Filesz > n-p.Off {
			return fmt.Errorf("%w: %v segment outside the file", ErrNotGoExecutable, p.Type)
		}
	}
	return nil
}

// groupNotes groups notes by name, in order of first appearance, keeping the
// order within a name.
func groupNotes(notes []Note) [][]Note {
	idx := map[string]int{}
	var groups [][]Note
	for _, n := range notes {
		i, ok := idx[n.Name]
		if !ok {
			i = len(groups)
			idx[n.Name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], n)
	}
	return groups
}

func sectionName(name string) string {
	if name == "Xen" {
		return ".note.Xen"
	}
	return ".note." + strings.ToLower(name)
}

func appendNote(b []byte, n Note) []byte {
	b = le.AppendUint32(b, uint32(len(n.Name)+1))
	b = le.AppendUint32(b, uint32(len(n.Desc)))
	b = le.AppendUint32(b, n.Type)
	b = append(b, n.Name...)
	b = append(b, 0)
	b = pad(b, noteAlign)
	b = append(b, n.Desc...)
	return pad(b, noteAlign)
}

func pad(b []byte, align int) []byte {
	for len(b)%align != 0 {
		b = append(b, 0)
	}
	return b
}

// ReadNotes returns the notes of every PT_NOTE segment of f, in file order
// (boot/elfnote, the reader the VMM uses too). Malformed or truncated
// notes give an error naming the segment and offset.
func ReadNotes(f *elf.File) ([]Note, error) {
	notes, err := elfnote.Read(f)
	if err != nil {
		return nil, fmt.Errorf("elfpatch: %w", err)
	}
	return notes, nil
}
