package elfpatch

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const helloOutput = "hello from elfpatch testdata\n"

var testNotes = []Note{
	{Name: "Xen", Type: 18, Desc: binary.LittleEndian.AppendUint32(nil, 0x100000)},
	{Name: "Amber", Type: 1, Desc: []byte("amber v0")},
	{Name: "Xen", Type: 5, Desc: []byte("xen-3.0")}, // grouped with the first
	{Name: "Amber", Type: 2, Desc: []byte{1, 2, 3, 4, 5}},
}

// wantOrder is testNotes as AddNotes lays them out: grouped by name.
var wantOrder = []Note{testNotes[0], testNotes[2], testNotes[1], testNotes[3]}

func runProg(t *testing.T, path, want string) {
	t.Helper()
	out, err := exec.Command(path).CombinedOutput()
	if err != nil || string(out) != want {
		t.Fatalf("running patched %s: %v, output %q, want %q", path, err, out, want)
	}
}

func openELF(t *testing.T, path string) *elf.File {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("debug/elf cannot parse %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// lastNoteProg returns the PT_NOTE program header AddNotes added last.
func lastNoteProg(t *testing.T, f *elf.File) *elf.Prog {
	t.Helper()
	p := f.Progs[len(f.Progs)-1]
	if p.Type != elf.PT_NOTE {
		t.Fatalf("last program header is %v, want PT_NOTE", p.Type)
	}
	return p
}

// loadedBytes returns the file bytes of every PT_LOAD segment, which
// AddNotes must leave alone except for the header page.
func loadedBytes(t *testing.T, f *elf.File) [][]byte {
	var out [][]byte
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if p.Off == 0 {
			b = b[0x1000:] // the header page is where AddNotes writes
		}
		out = append(out, b)
	}
	return out
}

func TestAddNotes(t *testing.T) {
	readelf := needTool(t, "readelf")
	orig := goBuild(t, "hello")
	path := copyProg(t, "hello")
	if err := AddNotes(path, testNotes); err != nil {
		t.Fatal(err)
	}
	runProg(t, path, helloOutput)

	f, of := openELF(t, path), openELF(t, orig)
	if len(f.Progs) != len(of.Progs)+1 {
		t.Fatalf("%d program headers, want %d", len(f.Progs), len(of.Progs)+1)
	}
	if !reflect.DeepEqual(loadedBytes(t, f), loadedBytes(t, of)) {
		t.Fatal("loaded segments changed")
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_PHDR && p.Filesz != uint64(len(f.Progs))*phdrSize {
			t.Errorf("PT_PHDR filesz %d, want %d", p.Filesz, len(f.Progs)*phdrSize)
		}
	}

	// The new segment holds exactly our notes, in the header page, and is
	// mapped at the address it claims.
	p := lastNoteProg(t, f)
	raw := make([]byte, p.Filesz)
	if _, err := p.ReadAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	got, err := parseNotes(raw, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantOrder) {
		t.Fatalf("PT_NOTE contents %+v, want %+v", got, wantOrder)
	}
	if p.Off+p.Filesz > 0x1000 || p.Memsz != p.Filesz || p.Vaddr == 0 || p.Paddr != p.Vaddr {
		t.Fatalf("note segment off %#x size %#x vaddr %#x paddr %#x memsz %#x: want it mapped in the header page",
			p.Off, p.Filesz, p.Vaddr, p.Paddr, p.Memsz)
	}
	for _, l := range f.Progs {
		if l.Type == elf.PT_LOAD && l.Off == 0 {
			mem := make([]byte, p.Filesz)
			l.ReadAt(mem, int64(p.Vaddr-l.Vaddr))
			if !bytes.Equal(mem, raw) {
				t.Fatal("first PT_LOAD does not map the notes at their vaddr")
			}
		}
	}

	// ReadNotes sees the Go linker's build ID note too.
	all, err := ReadNotes(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(testNotes)+1 || all[0].Name != "Go" || !reflect.DeepEqual(all[1:], wantOrder) {
		t.Fatalf("ReadNotes = %+v", all)
	}

	// One section per note name.
	for name, want := range map[string][]Note{".note.Xen": wantOrder[:2], ".note.amber": wantOrder[2:]} {
		s := f.Section(name)
		if s == nil || s.Type != elf.SHT_NOTE || s.Flags&elf.SHF_ALLOC == 0 {
			t.Fatalf("section %s: %+v", name, s)
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		ns, err := parseNotes(data, 4)
		if err != nil || !reflect.DeepEqual(ns, want) {
			t.Fatalf("section %s holds %+v (%v), want %+v", name, ns, err, want)
		}
	}

	out, err := exec.Command(readelf, "-nW", path).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf -n: %v\n%s", err, out)
	}
	for _, want := range []string{".note.Xen", ".note.amber", "Xen", "0x00000012", "Amber", "0x00000007", "0x00000008"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("readelf -n output lacks %q:\n%s", want, out)
		}
	}
	// readelf complains on stderr about inconsistent headers.
	cmd := exec.Command(readelf, "-aW", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("readelf -a: %v\n%s", err, stderr.String())
	}
	t.Logf("readelf -n:\n%s", out)
}

func TestAddNotesTwice(t *testing.T) {
	path := copyProg(t, "hello")
	if err := AddNotes(path, testNotes[:1]); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	err := AddNotes(path, testNotes)
	if !errors.Is(err, ErrNoteExists) {
		t.Fatalf("second AddNotes: %v, want ErrNoteExists", err)
	}
	t.Logf("second call: %v", err)
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("failed AddNotes changed the file")
	}

	// Different notes can still be added: each call adds a PT_NOTE.
	if err := AddNotes(path, testNotes[1:2]); err != nil {
		t.Fatal(err)
	}
	if err := AddNotes(path, testNotes[2:]); err != nil {
		t.Fatal(err)
	}
	runProg(t, path, helloOutput)
	f := openELF(t, path)
	all, err := ReadNotes(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(all[1:], testNotes) {
		t.Fatalf("ReadNotes = %+v, want Go build ID + %+v", all, testNotes)
	}
	for _, p := range f.Progs[len(f.Progs)-3:] {
		if p.Type != elf.PT_NOTE || p.Off+p.Filesz > 0x1000 {
			t.Fatalf("%v at %#x, want PT_NOTE in the header page", p.Type, p.Off)
		}
	}
	if s := f.Sections; s[len(s)-1].Name != ".note.amber" || s[len(s)-2].Name != ".note.Xen" {
		t.Fatalf("last sections %s %s", s[len(s)-2].Name, s[len(s)-1].Name)
	}
}

// TestAddNotesLarge checks the fallback for notes that do not fit in the
// header page: appended to the file, not mapped.
func TestAddNotesLarge(t *testing.T) {
	readelf := needTool(t, "readelf")
	path := copyProg(t, "hello")
	big := Note{Name: "Amber", Type: 3, Desc: bytes.Repeat([]byte("0123456789abcde"), 600)}
	if err := AddNotes(path, []Note{big, testNotes[0]}); err != nil {
		t.Fatal(err)
	}
	runProg(t, path, helloOutput)
	f := openELF(t, path)
	p := lastNoteProg(t, f)
	if p.Off < 0x1000 || p.Memsz != 0 {
		t.Fatalf("large note at %#x memsz %#x, want it appended and unmapped", p.Off, p.Memsz)
	}
	all, err := ReadNotes(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(all[1:], []Note{big, testNotes[0]}) {
		t.Fatal("ReadNotes does not return the large note")
	}
	out, err := exec.Command(readelf, "-nW", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0x00002328") {
		t.Fatalf("readelf -n: %v\n%s", err, out)
	}
}

// TestAddNotesTextAddress patches a program linked at a custom text address,
// as vmm build links images.
func TestAddNotesTextAddress(t *testing.T) {
	path := copyProg(t, "hello", "-ldflags=-T 0x1001000")
	if err := AddNotes(path, testNotes); err != nil {
		t.Fatal(err)
	}
	runProg(t, path, helloOutput)
	p := lastNoteProg(t, openELF(t, path))
	if p.Vaddr < 0x1000000 || p.Vaddr >= 0x1001000 {
		t.Fatalf("note vaddr %#x, want in the header page below 0x1001000", p.Vaddr)
	}
}

func TestAddNotesHostile(t *testing.T) {
	good, err := os.ReadFile(goBuild(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"empty":     {},
		"garbage":   []byte(strings.Repeat("not an ELF file\n", 100)),
		"elfmagic":  append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...),
		"32bit":     append([]byte{0x7f, 'E', 'L', 'F', 1, 1, 1}, good[7:]...),
		"bigendian": append([]byte{0x7f, 'E', 'L', 'F', 2, 2, 1}, good[7:]...),
	}
	for _, n := range []int{10, 63, 64, 100, 400, 2000, 4096, 0x2000, len(good) / 2, len(good) - 1} {
		files["trunc"+strconv.Itoa(n)] = good[:n]
	}
	// Section headers pointing past the end of the file.
	bad := bytes.Clone(good)
	binary.LittleEndian.PutUint64(bad[offShoff:], uint64(len(good)-10))
	files["badshoff"] = bad
	bad = bytes.Clone(good)
	binary.LittleEndian.PutUint16(bad[offShstrndx:], 0)
	files["noshstrtab"] = bad
	if sh, err := os.ReadFile("/bin/sh"); err == nil {
		files["bin-sh"] = sh // a C program, dynamically linked
	}
	// Random byte flips in the headers of a real program.
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 30; i++ {
		b := bytes.Clone(good[:0x2000])
		for j := 0; j < 1+rng.Intn(8); j++ {
			b[rng.Intn(0x1000)] = byte(rng.Intn(256))
		}
		files["flip"+strconv.Itoa(i)] = b
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
		// Some flipped headers are still valid; what matters is no panic
		// and, on error, an untouched file.
		err := AddNotes(path, testNotes)
		if err == nil && !strings.HasPrefix(name, "flip") {
			t.Errorf("%s: AddNotes succeeded", name)
			continue
		}
		if err != nil {
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Errorf("%s: failed AddNotes changed the file", name)
			}
		}
		if name == "garbage" || name == "32bit" || name == "bin-sh" {
			t.Logf("%s: %v", name, err)
		}
	}
	// The same in memory, many more times, over the whole file: header
	// flips must give an error or a file that still parses with our notes.
	ok := 0
	for i := 0; i < 300; i++ {
		b := bytes.Clone(good)
		for j := 0; j < 1+rng.Intn(4); j++ {
			b[rng.Intn(0x1000)] = byte(rng.Intn(256))
		}
		out, err := addNotes(b, testNotes)
		if err != nil {
			continue
		}
		ok++
		ns, err := readNotesFrom(out)
		if err != nil || len(ns) < len(testNotes) || !reflect.DeepEqual(ns[len(ns)-len(testNotes):], wantOrder) {
			t.Fatalf("flip %d: patched file reads back as %+v, %v", i, ns, err)
		}
	}
	t.Logf("%d of 300 randomly damaged headers were still patchable", ok)

	ents, _ := os.ReadDir(dir)
	if len(ents) != len(files) {
		t.Errorf("temporary files left behind: %d entries, want %d", len(ents), len(files))
	}

	if err := AddNotes(dir, testNotes); err == nil {
		t.Error("AddNotes on a directory succeeded")
	} else {
		t.Logf("directory: %v", err)
	}
	if err := AddNotes(filepath.Join(dir, "missing"), testNotes); err == nil {
		t.Error("AddNotes on a missing file succeeded")
	}
	path := copyProg(t, "hello")
	for _, ns := range [][]Note{nil, {{Name: "", Type: 1}}, {{Name: "a\x00b", Type: 1}}} {
		if err := AddNotes(path, ns); err == nil {
			t.Errorf("AddNotes(%+v) succeeded", ns)
		}
	}
}

// noteELF returns a minimal ELF64 file with one PT_NOTE segment holding seg,
// whose program header claims filesz bytes and the given alignment.
func noteELF(seg []byte, filesz, align uint64) []byte {
	b := make([]byte, ehdrSize+phdrSize)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[0x10:], uint16(elf.ET_EXEC))
	le.PutUint16(b[0x12:], uint16(elf.EM_X86_64))
	le.PutUint32(b[0x14:], 1)
	le.PutUint64(b[offPhoff:], ehdrSize)
	le.PutUint16(b[0x34:], ehdrSize)
	le.PutUint16(b[offPhentsz:], phdrSize)
	le.PutUint16(b[offPhnum:], 1)
	ph := b[ehdrSize:]
	le.PutUint32(ph[0:], uint32(elf.PT_NOTE))
	le.PutUint64(ph[0x08:], uint64(len(b)))
	le.PutUint64(ph[0x20:], filesz)
	le.PutUint64(ph[0x30:], align)
	return append(b, seg...)
}

func readNotesFrom(data []byte) (notes []Note, err error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return ReadNotes(f)
}

// TestReadNotesRandom round-trips random well-formed notes and feeds
// truncated and mutated ones, which must give errors or notes, never panics.
func TestReadNotesRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	errs := 0
	for i := 0; i < 3000; i++ {
		var notes []Note
		var seg []byte
		for j := rng.Intn(4); j >= 0; j-- {
			name := make([]byte, 1+rng.Intn(9))
			for k := range name {
				name[k] = byte('A' + rng.Intn(26))
			}
			n := Note{Name: string(name), Type: rng.Uint32(), Desc: randBytes(rng.Intn(40))}
			notes = append(notes, n)
			seg = appendNote(seg, n)
		}
		got, err := readNotesFrom(noteELF(seg, uint64(len(seg)), 4))
		if err != nil || !reflect.DeepEqual(got, notes) {
			t.Fatalf("round trip: got %+v, %v; want %+v", got, err, notes)
		}
		mut := bytes.Clone(seg)
		filesz := uint64(len(seg))
		switch rng.Intn(5) {
		case 0:
			mut = mut[:rng.Intn(len(mut))]
			filesz = uint64(len(mut))
		case 1:
			mut = mut[:rng.Intn(len(mut))] // header claims more than the file has
		case 2:
			for k := 0; k < 1+rng.Intn(4); k++ {
				mut[rng.Intn(len(mut))] = byte(rng.Intn(256))
			}
		case 3:
			le.PutUint32(mut[rng.Intn(2)*4:], rng.Uint32()) // namesz or descsz
		case 4:
			filesz = rng.Uint64()
		}
		if _, err := readNotesFrom(noteELF(mut, filesz, uint64(4<<rng.Intn(2)))); err != nil {
			errs++
		}
	}
	t.Logf("3000 random segments round-tripped; %d of 3000 mutations rejected with an error", errs)
	if _, err := readNotesFrom(noteELF([]byte{4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 'X', 'e', 'n', 0}, 16, 4)); err == nil ||
		!strings.Contains(err.Error(), "truncated") {
		t.Errorf("huge descsz: %v, want a truncation error", err)
	}
}

func FuzzReadNotes(f *testing.F) {
	var seg []byte
	for _, n := range testNotes {
		seg = appendNote(seg, n)
	}
	f.Add(seg, uint64(len(seg)), uint64(4))
	f.Add(seg[:7], uint64(7), uint64(4))
	f.Add(seg, uint64(1)<<62, uint64(8))
	f.Add([]byte{}, uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, seg []byte, filesz, align uint64) {
		readNotesFrom(noteELF(seg, filesz, align))
	})
}
