package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/vmm/crash"
	"golang.org/x/sys/unix"
)

var (
	imagesMu  sync.Mutex
	imagesDir string
	images    = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if imagesDir != "" {
		os.RemoveAll(imagesDir)
	}
	os.Exit(code)
}

// testImage builds the main package at pkg (relative to this directory)
// into an image once per test run, with the vmm CLI's builder, through
// the command line so this package does not import tools/.
func testImage(t testing.TB, pkg string) string {
	t.Helper()
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if p, ok := images[pkg]; ok {
		return p
	}
	// The nested KVM stage (tools/nestkvm) built the images on the host:
	// its Linux has no Go toolchain.
	if dir := os.Getenv("AMBER_TEST_PREBUILT"); dir != "" {
		p := filepath.Join(dir, "img", filepath.Join("vmm", pkg)+".img")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s was not built for the nested KVM stage (tools/nestkvm builds the packages tests name as literals): %v", pkg, err)
		}
		return p
	}
	if imagesDir == "" {
		dir, err := os.MkdirTemp("", "vmm-img-")
		if err != nil {
			t.Fatal(err)
		}
		imagesDir = dir
	}
	out := filepath.Join(imagesDir, fmt.Sprintf("%d-%s.img", len(images), filepath.Base(pkg)))
	cmd := exec.Command("go", "run", "../tools/vmm", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	images[pkg] = out
	return out
}

// helloImage returns the bytes of apps/hello's image.
func helloImage(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile(testImage(t, "../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestParseImage(t *testing.T) {
	raw := helloImage(t)
	img, err := ParseImage("hello.img", raw)
	if err != nil {
		t.Fatal(err)
	}
	if img.ABI != boot.ABIVersion || !strings.HasPrefix(img.GoVersion, "go1.") || img.Entry != img.note.Entry || img.lstar == 0 {
		t.Errorf("image: ABI %d, Go %q, entry %#x, note %+v", img.ABI, img.GoVersion, img.Entry, img.note)
	}
	if img.End <= boot.ImageBase || img.MinMemory() <= img.End || img.MinMemory() > DefaultMemory {
		t.Errorf("image end %#x, min memory %d MiB", img.End, img.MinMemory()>>20)
	}
	for _, p := range img.segments {
		if p.Paddr < boot.ImageBase {
			t.Errorf("segment at %#x below the image base", p.Paddr)
		}
	}
}

// mutate returns a copy of the image with one change applied.
func mutate(raw []byte, f func(b []byte)) []byte {
	b := bytes.Clone(raw)
	f(b)
	return b
}

func TestParseImageRejects(t *testing.T) {
	raw := helloImage(t)
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	phoff := le.Uint64(raw[0x20:])
	noteIdx := -1
	for i, p := range f.Progs {
		if p.Type == elf.PT_NOTE && p.Filesz > 0 {
			notes := raw[p.Off : p.Off+p.Filesz]
			if bytes.Contains(notes, []byte(boot.NoteNameAmber)) {
				noteIdx = i
			}
		}
	}
	if noteIdx < 0 {
		t.Fatal("no Amber note in the image")
	}
	amberNote := f.Progs[noteIdx]
	abiOff := amberNote.Off + 12 + 8 // namesz, descsz, type; "Amber\0" padded to 8
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty", nil, "not an ELF file"},
		{"text", []byte("hello, world\n"), "not an ELF file"},
		{"truncated header", raw[:40], "malformed or truncated"},
		{"truncated segments", raw[:len(raw)/2], "truncated"},
		{"32-bit", mutate(raw, func(b []byte) { b[4] = 1 }), ""},
		{"other machine", mutate(raw, func(b []byte) { le.PutUint16(b[0x12:], uint16(elf.EM_AARCH64)) }), "Amber images are 64-bit x86-64"},
		{"shared object", mutate(raw, func(b []byte) { le.PutUint16(b[0x10:], uint16(elf.ET_DYN)) }), "Amber images are 64-bit x86-64"},
		{"no Amber note", mutate(raw, func(b []byte) {
			copy(b[amberNote.Off+12:], "Ambex")
		}), "has no Amber kernel"},
		{"other ABI", mutate(raw, func(b []byte) { le.PutUint32(b[abiOff:], boot.ABIVersion+1) }), "rebuild it with this vmm"},
		{"entry elsewhere", mutate(raw, func(b []byte) { le.PutUint64(b[0x18:], f.Entry+16) }), "is not the kernel's"},
		{"segment below image", mutate(raw, func(b []byte) {
			for i, p := range f.Progs {
				if p.Type == elf.PT_LOAD {
					le.PutUint64(b[phoff+uint64(i)*56+24:], 0x1000) // p_paddr
					break
				}
			}
		}), "outside the image area"},
		{"corrupt note sizes", mutate(raw, func(b []byte) { le.PutUint32(b[amberNote.Off+4:], 0xfffffff0) }), "malformed ELF note"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseImage(c.name, c.raw)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q; want ErrNotImage mentioning %q", err, c.want)
			}
		})
	}
}

// The boot page tables map RAM identically, leave the null guard
// unmapped, and nothing beyond RAM.
func TestBootPageTables(t *testing.T) {
	for _, size := range []uint64{32 << 20, 128 << 20, 1<<30 + 2<<20} {
		m := &GuestMemory{mem: make([]byte, size)}
		if err := writeTables(m); err != nil {
			t.Fatal(err)
		}
		check := func(va uint64, mapped bool) {
			pa, err := crash.PageWalk(m, boot.PML4PA, va)
			if mapped && (err != nil || pa != va) {
				t.Errorf("mem %d MiB: va %#x -> %#x, %v; want identity", size>>20, va, pa, err)
			}
			if !mapped && err == nil {
				t.Errorf("mem %d MiB: va %#x is mapped (to %#x)", size>>20, va, pa)
			}
		}
		check(0, false)
		check(boot.NullGuard-1, false)
		check(boot.NullGuard, true)
		check(boot.StartInfoPA+100, true)
		check(boot.LowIdentity-1, true)
		check(boot.LowIdentity, true)
		check(boot.ImageBase+0x1234, true)
		check(size-1, true)
		check(size, false)
		check(0xc000000000, false)
		gdt, _ := m.Slice(boot.GDTPA, boot.GDTEntries*8)
		if d := binary.LittleEndian.Uint64(gdt[boot.SelUserCode>>3*8:]); d>>45&3 != 3 || d>>53&1 != 1 {
			t.Errorf("user code descriptor %#x is not DPL3 64-bit", d)
		}
		tss, _ := m.Slice(boot.TSSPA, boot.TSSLimit+1)
		if binary.LittleEndian.Uint16(tss[0x66:]) != boot.TSSIOMapBase || tss[boot.TSSLimit] != 0xff || binary.LittleEndian.Uint64(tss[0x24:]) != boot.IST1Top {
			t.Error("TSS: I/O bitmap or IST1 not set up")
		}
	}
}

func TestStartInfo(t *testing.T) {
	raw := helloImage(t)
	img, err := ParseImage("/some/dir/hello.img", raw)
	if err != nil {
		t.Fatal(err)
	}
	vm := &VM{img: img, mem: &GuestMemory{mem: make([]byte, 64<<20)}, tscHz: 2_500_000_000, bootTSC: 12345,
		cfg: Config{Env: []string{"A=B"}, Args: []string{"x y"}, Cmdline: []string{"amber.debug=1"}}}
	if err := vm.writeStartInfo(true); err != nil {
		t.Fatal(err)
	}
	area, _ := vm.mem.Slice(boot.StartInfoPA, boot.StartInfoMax)
	var si boot.StartInfo
	binary.Decode(area, binary.LittleEndian, &si)
	var ai boot.AmberInfo
	binary.Decode(area[boot.AmberInfoOffset:], binary.LittleEndian, &ai)
	if si.Magic != boot.StartInfoMagic || si.MemmapEntries != 2 || ai.Magic != boot.AmberInfoMagic || ai.TSCHz != 2_500_000_000 ||
		ai.BootTSC != 12345 || ai.RAMEnd != 64<<20 || ai.Flags != boot.AmberFlagHypercalls|boot.AmberFlagLSTAR || ai.Seed == [4]uint64{} {
		t.Errorf("start info %+v, amber info %+v", si, ai)
	}
	cmd := area[si.CmdlinePaddr-boot.StartInfoPA:]
	cmd = cmd[:bytes.IndexByte(cmd, 0)]
	if want := `amber.argv0=hello amber.debug=1 A=B -- "x y"`; string(cmd) != want {
		t.Errorf("command line %q, want %q", cmd, want)
	}
	vm.cfg.Args = []string{strings.Repeat("x", boot.MaxCmdline)}
	if err := vm.writeStartInfo(false); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized command line: %v", err)
	}
}

func TestGuestMemoryBounds(t *testing.T) {
	m := &GuestMemory{mem: make([]byte, 1<<20)}
	for _, c := range []struct{ pa, n uint64 }{{1 << 20, 1}, {1<<20 - 1, 2}, {^uint64(0), 2}, {0, ^uint64(0)}, {1 << 40, 0}} {
		if _, err := m.Slice(c.pa, c.n); err == nil {
			t.Errorf("Slice(%#x, %#x) accepted", c.pa, c.n)
		}
	}
	if s, err := m.Slice(1<<20-4, 4); err != nil || len(s) != 4 {
		t.Errorf("last 4 bytes: %v", err)
	}
}

func TestKVMErrors(t *testing.T) {
	defer func(d string) { kvmDevice = d }(kvmDevice)
	for _, c := range []struct{ dev, want string }{
		{filepath.Join(t.TempDir(), "kvm"), "does not exist"},
		{os.DevNull, "is not a KVM device"},
	} {
		kvmDevice = c.dev
		err := KVMAvailable()
		if !errors.Is(err, ErrNoKVM) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrNoKVM saying %q", c.dev, err, c.want)
		}
	}
	if os.Geteuid() != 0 {
		f := filepath.Join(t.TempDir(), "kvm")
		os.WriteFile(f, nil, 0)
		kvmDevice = f
		if err := KVMAvailable(); err == nil || !strings.Contains(err.Error(), "no permission") {
			t.Errorf("unreadable device: %v", err)
		}
	}
}

// The image file truncated (or rewritten) after OpenImage: the VMM works
// on its own snapshot, so loading it, its symbols and the guest memory
// mapped from it are unaffected. (The file used to be mapped into the VMM
// and the guest: a read of a truncated page was SIGBUS, issue 8.)
func TestImageTruncatedAfterOpen(t *testing.T) {
	raw := helloImage(t)
	path := filepath.Join(t.TempDir(), "hello.img")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("rebuilt"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("fault reading the image after the file was truncated: %v", r)
		}
	}()
	m, err := newGuestMemory(img.MinMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if err := img.load(m); err != nil {
		t.Fatal(err)
	}
	for _, p := range img.segments {
		got, _ := m.Slice(p.Paddr, p.Filesz)
		if !bytes.Equal(got, raw[p.Off:p.Off+p.Filesz]) {
			t.Errorf("segment at %#x differs from the file as it was opened", p.Paddr)
		}
	}
	if syms, err := crash.LoadSymbols(img.File); err != nil || syms == nil {
		t.Errorf("symbols: %v", err)
	}
}

// A FIFO as the image hung in open(2) waiting for a writer; devices were
// read as files.
func TestOpenImageRefusesNonRegularFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo.img")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{fifo, "is a named pipe (FIFO), not an image file"},
		{os.DevNull, "is a device, not an image file"},
		{t.TempDir(), "is a directory"},
	} {
		done := make(chan error, 1)
		go func() {
			img, err := OpenImage(c.path)
			if err == nil {
				img.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v; want ErrNotImage saying %q", c.path, err, c.want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("OpenImage(%s) hangs", c.path)
		}
	}
}
