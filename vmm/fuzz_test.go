package vmm

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/vmm/crash"
)

// Offsets in the image minimalImage builds.
const (
	miPhoff   = 64  // program headers: PT_LOAD, PT_NOTE
	miNoteOff = 176 // the notes
	miTextOff = 256 // the code: 16 bytes, mapped at ImageBase+miTextOff
)

// minimalImage returns a small well-formed Amber image, everything
// OpenImage and PVHEntry look at and nothing more: an ELF header, a PT_LOAD
// of 16 bytes of "code" plus a page of bss, and a PT_NOTE holding the
// Amber and Xen PVH notes.
func minimalImage() []byte {
	le := binary.LittleEndian
	entry := uint64(boot.ImageBase + miTextOff)
	note := func(b []byte, name string, typ uint32, desc []byte) []byte {
		b = le.AppendUint32(b, uint32(len(name)+1))
		b = le.AppendUint32(b, uint32(len(desc)))
		b = le.AppendUint32(b, typ)
		b = append(b, name...)
		b = append(b, make([]byte, (len(name)+1+3)&^3-len(name))...)
		b = append(b, desc...)
		return append(b, make([]byte, (len(desc)+3)&^3-len(desc))...)
	}
	desc, _ := binary.Append(nil, le, boot.AmberNote{ABIVersion: boot.ABIVersion, Entry: entry, LSTAR: entry + 8})
	desc = append(desc, "go1.26"...)
	notes := note(nil, boot.NoteNameAmber, boot.NoteTypeABI, desc)
	notes = note(notes, boot.NoteNameXen, boot.NoteTypePVH, le.AppendUint32(nil, uint32(entry+4)))

	b := make([]byte, miTextOff+16)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[0x10:], 2)  // ET_EXEC
	le.PutUint16(b[0x12:], 62) // EM_X86_64
	le.PutUint32(b[0x14:], 1)
	le.PutUint64(b[0x18:], entry)
	le.PutUint64(b[0x20:], miPhoff)
	le.PutUint16(b[0x34:], 64)
	le.PutUint16(b[0x36:], 56)
	le.PutUint16(b[0x38:], 2)
	le.PutUint16(b[0x3a:], 64)
	phdr := func(i int, typ, flags uint32, off, paddr, filesz, memsz, align uint64) {
		p := b[miPhoff+56*i:]
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], paddr)
		le.PutUint64(p[24:], paddr)
		le.PutUint64(p[32:], filesz)
		le.PutUint64(p[40:], memsz)
		le.PutUint64(p[48:], align)
	}
	phdr(0, 1, 5, miTextOff, boot.ImageBase+miTextOff, 16, 16+boot.PageSize, boot.PageSize) // PT_LOAD, R+X
	phdr(1, 4, 4, miNoteOff, 0, uint64(len(notes)), uint64(len(notes)), 4)                  // PT_NOTE
	if miNoteOff+len(notes) > miTextOff {
		panic("notes overlap the code")
	}
	copy(b[miNoteOff:], notes)
	for i := miTextOff; i < len(b); i++ {
		b[i] = 0xcc
	}
	return b
}

// phField returns a copy of img with the 64-bit field at off of program
// header i set to v (8: p_offset, 32: p_filesz, 40: p_memsz).
func phField(img []byte, i, off int, v uint64) []byte {
	b := append([]byte(nil), img...)
	binary.LittleEndian.PutUint64(b[miPhoff+56*i+off:], v)
	return b
}

// craftedImages are images made to break the VMM (issue 8: a PT_NOTE with
// p_filesz 2^63-1 panicked it in makeslice, 2^40 ran it out of memory),
// each with the error OpenImage must give.
func craftedImages() []struct {
	name string
	raw  []byte
	want string
} {
	mi := minimalImage()
	le := binary.LittleEndian
	set16 := func(off int, v uint16) []byte {
		b := append([]byte(nil), mi...)
		le.PutUint16(b[off:], v)
		return b
	}
	return []struct {
		name string
		raw  []byte
		want string
	}{
		{"note-filesz-2to63", phField(mi, 1, 32, 1<<63-1), "extends past the end of the file"},
		{"note-filesz-2to40", phField(mi, 1, 32, 1<<40), "extends past the end of the file"},
		{"note-offset-huge", phField(mi, 1, 8, 1<<62), "extends past the end of the file"},
		{"note-offset-wraps", phField(phField(mi, 1, 8, ^uint64(0)-7), 1, 32, 64), "malformed or truncated ELF"},
		{"load-filesz-2to63", phField(mi, 0, 32, 1<<63-1), "extends past the end of the file"},
		{"load-offset-wraps", phField(phField(mi, 0, 8, ^uint64(0)-7), 0, 32, 16), "malformed or truncated ELF"},
		{"load-memsz-huge", phField(mi, 0, 40, 1<<62), "outside the image area"},
		{"note-descsz-huge", func() []byte {
			b := append([]byte(nil), mi...)
			le.PutUint32(b[miNoteOff+4:], 0xfffffff0)
			return b
		}(), "malformed ELF note"},
		{"phnum-65535", set16(0x38, 0xffff), "malformed or truncated ELF"},
		{"shnum-65535", func() []byte {
			b := set16(0x3c, 0xffff)
			le.PutUint64(b[0x28:], miTextOff) // section headers "at" the code
			return b
		}(), "malformed or truncated ELF"},
		{"truncated-notes", mi[:miNoteOff+20], "extends past the end of the file"},
	}
}

// The crafted images fail with a message, in OpenImage as in ParseImage.
func TestCraftedImages(t *testing.T) {
	dir := t.TempDir()
	if _, err := ParseImage("minimal", minimalImage()); err != nil {
		t.Fatalf("the minimal image: %v", err)
	}
	for _, c := range craftedImages() {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name)
			if err := os.WriteFile(path, c.raw, 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := OpenImage(path)
			if err == nil {
				img.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q; want ErrNotImage saying %q", err, c.want)
			}
		})
	}
}

var updateSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the crafted seeds in testdata/fuzz/FuzzOpenImage")

// TestFuzzSeeds keeps the committed seed corpus in step with
// craftedImages: go test -run TestFuzzSeeds -update-fuzz-seeds rewrites it.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzOpenImage")
	seeds := map[string][]byte{"minimal": minimalImage()}
	for _, c := range craftedImages() {
		seeds[c.name] = c.raw
	}
	for name, raw := range seeds {
		path := filepath.Join(dir, name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", raw)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (err %v): run go test ./vmm -run TestFuzzSeeds -update-fuzz-seeds", path, err)
		}
	}
}

// FuzzOpenImage feeds arbitrary files to OpenImage and everything the VMM
// then does with an image before and after the guest runs (PVH entry,
// loading, symbols for a crash report). Any error is fine; a panic, a
// hang or an allocation the file's size does not justify is not. The seed
// corpus (testdata/fuzz/FuzzOpenImage: the crafted images, and the inputs
// that reached new code in 4 minutes of fuzzing, named by their hashes)
// runs with every go test; fuzz further with
// go test ./vmm -run '^$' -fuzz FuzzOpenImage, and add what it finds.
func FuzzOpenImage(f *testing.F) {
	path := filepath.Join(f.TempDir(), "fuzz.img")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := OpenImage(path)
		if err != nil {
			if !errors.Is(err, ErrNotImage) {
				t.Fatalf("error that does not wrap ErrNotImage: %v", err)
			}
			return
		}
		defer img.Close()
		img.PVHEntry()
		crash.LoadSymbols(img.File)
		if mem := img.MinMemory(); mem <= 64<<20 {
			m, err := newGuestMemory(64 << 20)
			if err != nil {
				t.Fatal(err)
			}
			defer m.close()
			if err := img.load(m); err != nil {
				t.Fatalf("load: %v", err)
			}
		}
	})
}
