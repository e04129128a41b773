package crash

import (
	"bufio"
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// chain is the testdata program, built once per test binary run.
var chain struct {
	once  sync.Once
	err   error
	path  string
	f     *elf.File
	syms  *Symbols
	funcs map[string]elf.Symbol // main.* functions from the ELF symtab
	lines map[string]int        // LINE: markers in the source
	dir   string
}

func loadChain(t *testing.T) {
	t.Helper()
	chain.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		dir, err := os.MkdirTemp("", "crash-test-")
		if err != nil {
			chain.err = err
			return
		}
		chain.dir = dir
		chain.path = filepath.Join(dir, "chain")
		cmd := exec.Command(gobin, "build", "-o", chain.path, ".")
		cmd.Dir = filepath.Join("testdata", "chain")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			chain.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		if chain.f, chain.err = elf.Open(chain.path); chain.err != nil {
			return
		}
		if chain.syms, chain.err = LoadSymbols(chain.f); chain.err != nil {
			return
		}
		syms, err := chain.f.Symbols()
		if err != nil {
			chain.err = err
			return
		}
		chain.funcs = map[string]elf.Symbol{}
		for _, s := range syms {
			if strings.HasPrefix(s.Name, "main.") && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
				chain.funcs[s.Name] = s
			}
		}
		chain.lines, chain.err = markerLines(filepath.Join("testdata", "chain", "main.go"))
	})
	if chain.err != nil {
		t.Fatalf("building testdata/chain: %v", chain.err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chain.dir != "" {
		os.RemoveAll(chain.dir)
	}
	os.Exit(code)
}

func markerLines(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int{}
	re := regexp.MustCompile(`// LINE:(\S+)`)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if s := re.FindStringSubmatch(sc.Text()); s != nil {
			m[s[1]] = n
		}
	}
	return m, sc.Err()
}

func funcCode(t *testing.T, name string) (uint64, []byte) {
	t.Helper()
	s, ok := chain.funcs[name]
	if !ok {
		t.Fatalf("no symbol %s", name)
	}
	for _, p := range chain.f.Progs {
		if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value+s.Size <= p.Vaddr+p.Filesz {
			b := make([]byte, s.Size)
			if _, err := p.ReadAt(b, int64(s.Value-p.Vaddr)); err != nil {
				t.Fatal(err)
			}
			return s.Value, b
		}
	}
	t.Fatalf("%s not in a loaded segment", name)
	return 0, nil
}

// retAfterCall returns the return address of fn's CALL to callee.
func retAfterCall(t *testing.T, fn, callee string) uint64 {
	t.Helper()
	addr, code := funcCode(t, fn)
	target := chain.funcs[callee].Value
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatalf("decoding %s+%#x: %v", fn, off, err)
		}
		next := addr + uint64(off+inst.Len)
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL && next+uint64(int64(rel)) == target {
			return next
		}
		off += inst.Len
	}
	t.Fatalf("%s does not call %s", fn, callee)
	return 0
}

func TestLookup(t *testing.T) {
	loadChain(t)
	data, err := chain.f.Section(".gopclntab").Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, chain.f.Section(".text").Addr))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"main.a", "main.b", "main.c", "main.main"} {
		entry := chain.funcs[name].Value
		fn, file, line, ok := chain.syms.Lookup(entry)
		wantFile, wantLine, _ := tab.PCToLine(entry)
		if !ok || fn != name || file != wantFile || line != wantLine {
			t.Errorf("Lookup(%#x) = %q, %s:%d, %v; want %q, %s:%d", entry, fn, file, line, ok, name, wantFile, wantLine)
		}
		if !strings.HasSuffix(file, "testdata/chain/main.go") {
			t.Errorf("Lookup(%s) file = %q, want the testdata source", name, file)
		}
		if name, base := chain.syms.Sym(entry + 1); name != fn || base != entry {
			t.Errorf("Sym(%#x) = %q, %#x", entry+1, name, base)
		}
	}
	// The CALL in b is on the marked line; its return address, less one, too.
	ret := retAfterCall(t, "main.b", "main.c")
	if fn, _, line, _ := chain.syms.Lookup(ret - 1); fn != "main.b" || line != chain.lines["b-calls-c"] {
		t.Errorf("Lookup(call site in b) = %s:%d, want main.b:%d", fn, line, chain.lines["b-calls-c"])
	}
	if _, _, _, ok := chain.syms.Lookup(0x10); ok {
		t.Errorf("Lookup(0x10) found a function")
	}
	var nilSyms *Symbols
	if _, _, _, ok := nilSyms.Lookup(chain.funcs["main.a"].Value); ok {
		t.Errorf("nil Symbols found a function")
	}
}

// guest is a synthetic guest-physical memory with page tables built by hand.
type guest struct {
	mem  PhysBytes
	next uint64 // next free page
	cr3  uint64
}

func newGuest(size int) *guest {
	g := &guest{mem: make(PhysBytes, size), next: 0x1000}
	g.cr3 = g.alloc()
	return g
}

func (g *guest) alloc() uint64 {
	pa := g.next
	g.next += 0x1000
	if g.next > uint64(len(g.mem)) {
		panic("test guest out of memory")
	}
	return pa
}

func (g *guest) entry(pa uint64) uint64 { return binary.LittleEndian.Uint64(g.mem[pa:]) }
func (g *guest) setEntry(pa, v uint64)  { binary.LittleEndian.PutUint64(g.mem[pa:], v) }

// mapPage maps va to pa with a page whose size is 1<<shift (12, 21 or 30).
func (g *guest) mapPage(va, pa uint64, shift uint) {
	table := g.cr3
	for level := 0; ; level++ {
		lshift := 39 - 9*uint(level)
		slot := table + (va>>lshift&511)*8
		if lshift == shift {
			e := pa | 3
			if shift != 12 {
				e |= ptePageSize
			}
			g.setEntry(slot, e)
			return
		}
		if g.entry(slot)&ptePresent == 0 {
			g.setEntry(slot, g.alloc()|7)
		}
		table = g.entry(slot) & pteAddrMask
	}
}

func (g *guest) virt() VirtMemory { return VirtMemory{Phys: g.mem, CR3: g.cr3} }

func (g *guest) write(va uint64, b []byte) {
	for i := range b {
		pa, err := PageWalk(g.mem, g.cr3, va+uint64(i))
		if err != nil {
			panic(err)
		}
		g.mem[pa] = b[i]
	}
}

func (g *guest) write64(va, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	g.write(va, b[:])
}

func TestPageWalk(t *testing.T) {
	g := newGuest(1 << 20)
	const (
		va1G = 0x40000000 + 0x12345678&(1<<30-1)
		va2M = 0x1_7fe0_0000 + 0x1abcd
		va4K = 0xffff_8000_0000_1000 + 0x123
	)
	g.mapPage(va1G&^(1<<30-1), 0x80000000, 30)
	g.mapPage(va2M&^(1<<21-1), 0x200000, 21)
	page := g.alloc()
	g.mapPage(va4K&^0xfff, page, 12)
	for _, c := range []struct{ va, want uint64 }{
		{va1G, 0x80000000 | va1G&(1<<30-1)},
		{va2M, 0x200000 | va2M&(1<<21-1)},
		{va4K, page | 0x123},
	} {
		if pa, err := PageWalk(g.mem, g.cr3, c.va); err != nil || pa != c.want {
			t.Errorf("PageWalk(%#x) = %#x, %v; want %#x", c.va, pa, err, c.want)
		}
	}
	// The low CR3 bits (PCID, PWT/PCD) are not part of the table address.
	if pa, err := PageWalk(g.mem, g.cr3|0x18, va4K); err != nil || pa != page|0x123 {
		t.Errorf("PageWalk with CR3 flag bits = %#x, %v", pa, err)
	}

	checkErr := func(va uint64, level int, substr string) {
		t.Helper()
		_, err := PageWalk(g.mem, g.cr3, va)
		var we *WalkError
		if !errors.As(err, &we) || we.Level != level || !strings.Contains(err.Error(), substr) {
			t.Errorf("PageWalk(%#x) error = %v; want level %d, containing %q", va, err, level, substr)
		}
	}
	checkErr(0x8000_0000_0000, -1, "non-canonical")
	checkErr(0x10_0000_0000_0000, -1, "non-canonical")
	checkErr(0x0000_7000_0000_0000, 0, "PML4 entry 0x0 not present")
	checkErr(0xc0000000, 1, "PDPT entry 0x0 not present")  // same PML4 slot as the 1G page
	checkErr(0x1_7fc0_0000, 2, "PD entry 0x0 not present") // same PD as the 2M page
	checkErr(va4K+0x1000, 3, "PT entry 0x0 not present")   // same PT as the 4K page
	if _, err := PageWalk(g.mem, g.cr3, 0xc0000000); !errors.Is(err, ErrNotPresent) {
		t.Errorf("not-present error %v does not match ErrNotPresent", err)
	}

	// Hostile tables: entries pointing outside memory, a reserved bit, and a
	// table that is its own child at every level.
	g.setEntry(g.cr3+8*200, 0x7fff_ffff_f000|1)
	checkErr(200<<39, 1, "unreadable")
	g.setEntry(g.cr3+8*201, 0x5000|1|ptePageSize)
	checkErr(201<<39, 0, "reserved page-size bit")
	self := g.alloc()
	for i := uint64(0); i < 512; i++ {
		g.setEntry(self+i*8, self|3)
	}
	if pa, err := PageWalk(g.mem, self, 0x1234_5678_9abc); err != nil || pa != self|0xabc {
		t.Errorf("self-referencing walk = %#x, %v; want %#x", pa, err, self|0xabc)
	}
	if _, err := PageWalk(g.mem, uint64(len(g.mem))+0x1000, 0); err == nil {
		t.Errorf("walk with CR3 outside memory succeeded")
	}
}

func TestVirtMemoryCrossesPages(t *testing.T) {
	g := newGuest(1 << 20)
	// Two adjacent virtual pages on non-adjacent physical pages, in the
	// opposite order.
	p2, _, p1 := g.alloc(), g.alloc(), g.alloc()
	g.mapPage(0x10000, p1, 12)
	g.mapPage(0x11000, p2, 12)
	copy(g.mem[p1+0xffc:], "abcd")
	copy(g.mem[p2:], "efgh")
	buf := make([]byte, 8)
	if err := g.virt().ReadVirt(0x10ffc, buf); err != nil || string(buf) != "abcdefgh" {
		t.Errorf("ReadVirt across pages = %q, %v", buf, err)
	}
	if err := g.virt().ReadVirt(0x11ffc, buf); err == nil {
		t.Errorf("ReadVirt into an unmapped page succeeded")
	}
	if err := g.virt().ReadVirt(^uint64(3), buf); err == nil {
		t.Errorf("ReadVirt wrapping around the address space succeeded")
	}
}

// chainGuest maps the chain program's text (at a physical address unlike
// its virtual one, so a walker that assumes identity mapping fails) and a
// stack page.
const stackVA = 0xc000_040000

func chainGuest(t *testing.T) *guest {
	t.Helper()
	g := newGuest(4 << 20)
	for _, p := range chain.f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		for off := uint64(0); off < p.Filesz+p.Vaddr&0xfff; off += 0x1000 {
			g.mapPage(p.Vaddr&^0xfff+off, g.alloc(), 12)
		}
		g.write(p.Vaddr, data)
	}
	g.mapPage(stackVA, g.alloc(), 12)
	return g
}

func writeReport(t *testing.T, r Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", b.String())
	return b.String()
}

// backtraceFuncs returns the function names of the report's backtrace.
func backtraceFuncs(report string) []string {
	_, bt, _ := strings.Cut(report, "\nbacktrace:\n")
	var fns []string
	for _, l := range strings.Split(bt, "\n") {
		if strings.HasSuffix(l, "()") {
			fns = append(fns, strings.TrimSuffix(l, "()"))
		}
	}
	return fns
}

// TestReportLeafFault is a nil dereference in the frameless leaf main.c,
// called from b, from a, from main: the return address into b is on top of
// the stack and RBP is still b's frame pointer.
func TestReportLeafFault(t *testing.T) {
	loadChain(t)
	g := chainGuest(t)
	cEntry, cCode := funcCode(t, "main.c")
	// The faulting instruction: the first load through a register, found
	// with an independent decode.
	var rip uint64
	var want x86asm.Inst
	for off := 0; off < len(cCode); {
		inst, err := x86asm.Decode(cCode[off:], 64)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := inst.Args[1].(x86asm.Mem); ok && inst.Op == x86asm.MOV && m.Base != x86asm.RIP {
			rip, want = cEntry+uint64(off), inst
			break
		}
		off += inst.Len
	}
	if rip == 0 {
		t.Fatal("no load through a register in main.c")
	}

	// Frame records as Go lays them out: each caller's record above its
	// callee's, a return address into main, and a zero frame pointer and
	// return address ending the chain.
	fpMain := uint64(stackVA + 0xf00)
	fpA := fpMain - 0x40
	fpB := fpA - 0x20
	rsp := fpB - 16
	g.write64(rsp, retAfterCall(t, "main.b", "main.c"))
	g.write64(fpB, fpA)
	g.write64(fpB+8, retAfterCall(t, "main.a", "main.b"))
	g.write64(fpA, fpMain)
	g.write64(fpA+8, retAfterCall(t, "main.main", "main.a"))
	g.write64(fpMain, 0)
	g.write64(fpMain+8, 0)

	out := writeReport(t, Report{
		Reason: "unhandled exception", Vector: 14, ErrorCode: 4,
		Regs: Regs{RIP: rip, RSP: rsp, RBP: fpB, RAX: 0, RFLAGS: 0x10246, CS: 0x33, SS: 0x2b, CR2: 0, CR3: g.cr3},
		Mem:  g.virt(), Image: chain.syms,
	})

	if want := "guest crashed: unhandled exception: page fault (#PF, vector 14) at 0x0, error code 0x4 (read, user, not present)\n"; !strings.HasPrefix(out, want) {
		t.Errorf("reason line: got %q, want %q", strings.SplitN(out, "\n", 2)[0], want)
	}
	wantLine := fmt.Sprintf("=> %#016x  main.c+%#x", rip, rip-cEntry)
	wantAsm := x86asm.GoSyntax(want, rip, chain.syms.Sym)
	found := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, wantLine) {
			found = true
			if !strings.HasSuffix(l, " "+wantAsm) {
				t.Errorf("faulting instruction line %q does not end in %q", l, wantAsm)
			}
		}
	}
	if !found {
		t.Errorf("report has no line starting %q", wantLine)
	}
	if !strings.Contains(out, "rflags [PF ZF IF RF IOPL=0]") {
		t.Errorf("RFLAGS not decoded")
	}
	if got, want := backtraceFuncs(out), []string{"main.c", "main.b", "main.a", "main.main"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("backtrace = %v, want %v", got, want)
	}
	for _, m := range []string{"c-deref", "b-calls-c", "a-calls-b", "main-calls-a"} {
		if s := fmt.Sprintf("main.go:%d +0x", chain.lines[m]); !strings.Contains(out, s) {
			t.Errorf("backtrace lacks %s (%s)", s, m)
		}
	}
	if !strings.Contains(out, "backtrace stopped: return address at") {
		t.Errorf("backtrace did not stop at the zero return address")
	}
}

// TestReportFramedFault faults in b after its prologue, so the whole
// backtrace comes from the frame-pointer chain.
func TestReportFramedFault(t *testing.T) {
	loadChain(t)
	g := chainGuest(t)
	rip := retAfterCall(t, "main.b", "main.c") // the instruction after the CALL
	fpMain := uint64(stackVA + 0xf00)
	fpA := fpMain - 0x40
	fpB := fpA - 0x20
	g.write64(fpB, fpA)
	g.write64(fpB+8, retAfterCall(t, "main.a", "main.b"))
	g.write64(fpA, fpMain)
	g.write64(fpA+8, retAfterCall(t, "main.main", "main.a"))
	out := writeReport(t, Report{
		Reason: "kernel panic: test", Vector: -1,
		Regs: Regs{RIP: rip, RSP: fpB - 8, RBP: fpB, CS: 0x33, CR3: g.cr3},
		Mem:  g.virt(), Image: chain.syms,
	})
	if !strings.HasPrefix(out, "guest crashed: kernel panic: test\n") {
		t.Errorf("bad reason line")
	}
	if got := backtraceFuncs(out); len(got) < 3 || strings.Join(got[:3], " ") != "main.b main.a main.main" {
		t.Errorf("backtrace = %v, want main.b main.a main.main ...", got)
	}
	// The instructions before RIP are found by decoding from b's entry.
	if !strings.Contains(out, "CALL main.c(SB)") {
		t.Errorf("disassembly does not show the CALL to main.c before RIP")
	}
}

func TestReportHostile(t *testing.T) {
	loadChain(t)
	rip := chain.funcs["main.b"].Value + 0x13
	cases := []struct {
		name  string
		setup func(g *guest) Regs
		want  []string
	}{
		{"self-cycle", func(g *guest) Regs {
			g.write64(stackVA+0x100, stackVA+0x100)
			g.write64(stackVA+0x108, rip)
			return Regs{RIP: rip, RBP: stackVA + 0x100}
		}, []string{"is not above it"}},
		{"two-cycle", func(g *guest) Regs {
			g.write64(stackVA+0x100, stackVA+0x200)
			g.write64(stackVA+0x108, rip)
			g.write64(stackVA+0x200, stackVA+0x100)
			g.write64(stackVA+0x208, rip)
			return Regs{RIP: rip, RBP: stackVA + 0x100}
		}, []string{"saved frame pointer 0x" + fmt.Sprintf("%x", stackVA+0x100) + " at"}},
		{"endless increasing chain", func(g *guest) Regs {
			for fp := uint64(stackVA); fp < stackVA+0x1000; fp += 16 {
				g.write64(fp, fp+16)
				g.write64(fp+8, rip)
			}
			return Regs{RIP: rip, RBP: stackVA}
		}, []string{"reached the 64-frame limit"}},
		{"unmapped frame pointer", func(g *guest) Regs {
			return Regs{RIP: rip, RBP: 0x7000_0000_0000}
		}, []string{"frame pointer 0x700000000000 is unreadable", "PML4 entry 0x0 not present"}},
		{"misaligned frame pointer", func(g *guest) Regs {
			return Regs{RIP: rip, RBP: stackVA + 3}
		}, []string{"misaligned"}},
		{"entries outside memory", func(g *guest) Regs {
			g.setEntry(g.cr3+8*200, 0xf_ffff_ffff_f000|1)
			return Regs{RIP: 200 << 39, RBP: 200<<39 + 0x100}
		}, []string{fmt.Sprintf("code at pc=%#x: unreadable", uint64(200<<39)), "PDPT entry at pa", "outside guest memory"}},
		{"non-canonical", func(g *guest) Regs {
			return Regs{RIP: 0xdead_0000_0000_0000, RBP: 0x8000_0000_0000}
		}, []string{"unreadable: va 0xdead000000000000: non-canonical"}},
		{"self-referencing page table", func(g *guest) Regs {
			self := g.alloc()
			for i := uint64(0); i < 512; i++ {
				g.setEntry(self+i*8, self|3)
			}
			g.cr3 = self
			return Regs{RIP: 0x1234_5678, RBP: 0x4000_0000, RSP: 0x4000_0000}
		}, []string{"backtrace stopped: "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := chainGuest(t)
			regs := c.setup(g)
			regs.CR3 = g.cr3
			out := writeReport(t, Report{Reason: "triple fault", Vector: -1, Regs: regs, Mem: g.virt(), Image: chain.syms})
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q", w)
				}
			}
			if !strings.Contains(out, "backtrace stopped: ") {
				t.Errorf("report does not say why the backtrace stopped")
			}
		})
	}
}

// TestReportGarbage feeds random memory and registers through the whole
// report: whatever the guest left behind, Write must finish without panicking.
func TestReportGarbage(t *testing.T) {
	loadChain(t)
	seed := uint64(1)
	rnd := func() uint64 { // xorshift: deterministic, no imports needed
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return seed
	}
	mem := make(PhysBytes, 64<<10)
	for i := 0; i < 300; i++ {
		for j := 0; j < len(mem); j += 8 {
			v := rnd()
			// Keep many entries present and inside memory so walks go deep.
			if v&3 == 0 {
				v = v&0xf000 | 1 | (v>>59&1)<<7
			}
			binary.LittleEndian.PutUint64(mem[j:], v)
		}
		regs := Regs{RIP: rnd(), RSP: rnd() & 0xffff, RBP: rnd() & 0xfff0, CR3: rnd() & 0xf000, RFLAGS: rnd(), CS: uint16(rnd()), CR2: rnd()}
		if i%3 == 0 {
			regs.RIP = chain.funcs["main.b"].Value + rnd()%46
		}
		var b bytes.Buffer
		r := Report{Vector: int(rnd()%40) - 2, ErrorCode: rnd(), Regs: regs, Mem: VirtMemory{Phys: mem, CR3: regs.CR3}, Image: chain.syms}
		if err := Write(&b, r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "backtrace stopped: ") || strings.Contains(b.String(), "internal error") {
			t.Fatalf("bad report for iteration %d:\n%s", i, b.String())
		}
	}
}

func TestReportNoMemoryNoSymbols(t *testing.T) {
	out := writeReport(t, Report{Reason: "triple fault", Vector: 13, ErrorCode: 0x1a, Regs: Regs{RIP: 0x401000, RBP: 0x1000}})
	for _, w := range []string{
		"guest crashed: triple fault: general protection fault (#GP, vector 13), error code 0x1a (IDT vector 3)",
		"code at pc=0x401000: unreadable: guest memory not available",
		"?()\n\t?:0 pc=0x401000",
		"backtrace stopped: guest memory not available",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q", w)
		}
	}
}

func TestVectorNames(t *testing.T) {
	for v, want := range map[int]string{
		0: "divide error (#DE, vector 0)", 6: "invalid opcode (#UD, vector 6)", 8: "double fault (#DF, vector 8)",
		13: "general protection fault (#GP, vector 13)", 14: "page fault (#PF, vector 14)",
		15: "reserved exception (vector 15)", 32: "interrupt (vector 32)",
	} {
		if got := vectorString(v); got != want {
			t.Errorf("vectorString(%d) = %q, want %q", v, got, want)
		}
	}
	for code, want := range map[uint64]string{
		0x0:  "read, supervisor, not present",
		0x7:  "write, user, protection violation",
		0x15: "instruction fetch, user, protection violation",
		0x9:  "read, supervisor, protection violation, reserved bit set",
	} {
		if got := decodeErrorCode(14, code); got != want {
			t.Errorf("#PF error code %#x = %q, want %q", code, got, want)
		}
	}
}
