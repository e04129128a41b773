package elfpatch

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"math/rand"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"
)

// objdumpLine matches an instruction line of `objdump -d --no-show-raw-insn -w`.
var objdumpLine = regexp.MustCompile(`^ *([0-9a-f]+):\t(\S+)`)

// objdump disassembles path with binutils and returns the address of every
// instruction and of every SYSCALL.
func objdump(t *testing.T, path string) (insns map[uint64]bool, syscalls []uint64) {
	t.Helper()
	out, err := exec.Command(needTool(t, "objdump"), "-d", "--no-show-raw-insn", "-w", path).Output()
	if err != nil {
		t.Fatalf("objdump -d %s: %v", path, err)
	}
	insns = map[uint64]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := objdumpLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		addr, err := strconv.ParseUint(m[1], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		insns[addr] = true
		if m[2] == "syscall" {
			syscalls = append(syscalls, addr)
		}
	}
	return insns, syscalls
}

// dataInText is the one package whose text holds data: its functions are a
// JMP over magic bytes that tools look for (crypto/internal/boring/sig), so
// there a linear sweep, ours or objdump's, decodes garbage and the two may
// disagree. Neither finds a SYSCALL there.
const dataInText = "crypto/internal/boring/sig."

// runtimeAllowed is what the build allows before the overlay rewrites the
// runtime: the GOROOT packages that make system calls.
func runtimeAllowed(sym string) bool {
	// time.now is the runtime's (runtime/time_linux_amd64.s).
	if sym == "time.now" {
		return true
	}
	for _, p := range []string{"runtime.", "internal/runtime/syscall/linux.", "syscall."} {
		if strings.HasPrefix(sym, p) {
			return true
		}
	}
	return false
}

func TestScanSyscalls(t *testing.T) {
	for _, tc := range []struct {
		prog string
		// functions that must be among the sites, and the packages the
		// sites outside runtimeAllowed must be in
		mustHave []string
		foreign  string
	}{
		{prog: "hello", mustHave: []string{"runtime.write1.abi0", "runtime.futex.abi0", "internal/runtime/syscall/linux.Syscall6", "syscall.rawVforkSyscall.abi0", "time.now"}},
		{prog: "big", mustHave: []string{"runtime.write1.abi0", "internal/runtime/syscall/linux.Syscall6"}},
		{prog: "xsys", mustHave: []string{"golang.org/x/sys/unix.RawSyscallNoError.abi0"}, foreign: "golang.org/x/sys/unix."},
	} {
		t.Run(tc.prog, func(t *testing.T) {
			t.Parallel()
			path := goBuild(t, tc.prog)
			f := openELF(t, path)
			start := time.Now()
			sites, err := ScanSyscalls(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			scanTime := time.Since(start)

			// Every instruction boundary, not just the SYSCALLs, must agree
			// with objdump: this is what validates the VEX/EVEX decoder.
			start = time.Now()
			insns, want := objdump(t, path)
			objdumpTime := time.Since(start)
			mine := map[uint64]bool{}
			lengthOnly := 0
			var data []funcRange
			err = decodeText(f, func(r funcRange, addr uint64, inst *x86asm.Inst) {
				if strings.HasPrefix(r.name, dataInText) {
					if len(data) == 0 || data[len(data)-1] != r {
						data = append(data, r)
					}
					return
				}
				mine[addr] = true
				if inst == nil {
					lengthOnly++
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			var onlyMine, onlyObjdump []string
			for a := range mine {
				if !insns[a] {
					onlyMine = append(onlyMine, strconv.FormatUint(a, 16))
				}
			}
		next:
			for a := range insns {
				for _, r := range data {
					if a >= r.lo && a < r.hi {
						continue next
					}
				}
				if !mine[a] {
					onlyObjdump = append(onlyObjdump, strconv.FormatUint(a, 16))
				}
			}
			if len(onlyMine)+len(onlyObjdump) > 0 {
				sort.Strings(onlyMine)
				sort.Strings(onlyObjdump)
				t.Errorf("instruction boundaries differ from objdump: %d only mine %.20v, %d only objdump's %.20v",
					len(onlyMine), onlyMine, len(onlyObjdump), onlyObjdump)
			}

			var got []uint64
			funcs := map[string]bool{}
			for _, s := range sites {
				got = append(got, s.Addr)
				funcs[s.Symbol] = true
				if s.Symbol == "" {
					t.Errorf("SYSCALL outside any function: %v", s)
				}
			}
			if len(got) == 0 || !equalSorted(got, want) {
				t.Errorf("SYSCALL sites %x, objdump finds %x", got, want)
			}
			for _, fn := range tc.mustHave {
				if !funcs[fn] {
					t.Errorf("no SYSCALL reported in %s", fn)
				}
			}
			rest, err := ScanSyscalls(f, runtimeAllowed)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range rest {
				if tc.foreign == "" || !strings.HasPrefix(s.Symbol, tc.foreign) {
					t.Errorf("unexpected site outside the runtime: %v", s)
				}
			}
			if tc.foreign != "" && len(rest) == 0 {
				t.Errorf("no sites found outside the runtime, want some in %s", tc.foreign)
			}
			st, _ := os.Stat(path)
			t.Logf("%s (%d KB): %d SYSCALL sites in %d functions (objdump: %d), %d outside runtime/syscall; "+
				"%d instructions (%d VEX/EVEX/0F38/0F3A decoded by length only) agree with objdump; scan %v, objdump %v",
				tc.prog, st.Size()>>10, len(sites), len(funcs), len(want), len(rest),
				len(mine), lengthOnly, scanTime.Round(time.Millisecond), objdumpTime.Round(time.Millisecond))
		})
	}
}

func equalSorted(a, b []uint64) bool {
	a = append([]uint64(nil), a...)
	b = append([]uint64(nil), b...)
	sort.Slice(a, func(i, j int) bool { return a[i] < a[j] })
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestScanSyscallsPatched checks that AddNotes adds no apparent SYSCALL
// (notes land in the executable header page, but not in a text section).
func TestScanSyscallsPatched(t *testing.T) {
	path := copyProg(t, "hello")
	before, err := ScanSyscalls(openELF(t, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := AddNotes(path, []Note{{Name: "Amber", Type: 9, Desc: []byte{0x0f, 0x05, 0x0f, 0x05}}}); err != nil {
		t.Fatal(err)
	}
	after, err := ScanSyscalls(openELF(t, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(after) {
		t.Fatalf("%d sites before AddNotes, %d after", len(before), len(after))
	}
}

func TestScanSyscallsHostile(t *testing.T) {
	good, err := os.ReadFile(goBuild(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	stripped := goBuild(t, "hello", "-ldflags=-s -w")
	sf := openELF(t, stripped)
	if _, err := ScanSyscalls(sf, nil); err == nil {
		t.Error("scanning a stripped binary succeeded")
	} else {
		t.Logf("stripped: %v", err)
	}
	// Damaged section headers and symbols: errors or results, no panics.
	shoff := binary.LittleEndian.Uint64(good[offShoff:])
	symtab := openELF(t, goBuild(t, "hello")).Section(".symtab")
	rng := rand.New(rand.NewSource(4))
	for i := 0; i < 20; i++ {
		b := bytes.Clone(good)
		for j := 0; j < 1+rng.Intn(6); j++ {
			if rng.Intn(2) == 0 {
				b[shoff+uint64(rng.Intn(int(binary.LittleEndian.Uint16(good[offShnum:]))*shdrSize))] = byte(rng.Intn(256))
			} else {
				b[symtab.Offset+uint64(rng.Intn(int(symtab.Size)))] = byte(rng.Intn(256))
			}
		}
		if f, err := elf.NewFile(bytes.NewReader(b)); err == nil {
			ScanSyscalls(f, runtimeAllowed)
		}
	}
	for _, n := range []int{0x2000, 0x50000, len(good) - 0x1000} {
		f, err := elf.NewFile(bytes.NewReader(good[:n]))
		if err != nil {
			continue
		}
		if _, err := ScanSyscalls(f, nil); err == nil {
			t.Errorf("scanning the first %#x bytes succeeded", n)
		}
	}
}

func TestFunctionRanges(t *testing.T) {
	sec := &elf.Section{SectionHeader: elf.SectionHeader{Addr: 0x1000, Size: 0x100}}
	sym := func(name string, addr, size uint64) elf.Symbol {
		return elf.Symbol{Name: name, Info: elf.ST_INFO(elf.STB_GLOBAL, elf.STT_FUNC), Section: 1, Value: addr, Size: size}
	}
	got := functionRanges(sec, 1, []elf.Symbol{
		sym("text", 0x1000, 0), // zero-size alias of the first function
		sym("a", 0x1000, 0x10),
		sym("b", 0x1020, 0), // size from the next symbol
		sym("c", 0x1040, 0x80),
		sym("inner", 0x1050, 0x10), // inside c: c is cut there
		{Name: "obj", Info: elf.ST_INFO(elf.STB_GLOBAL, elf.STT_OBJECT), Section: 1, Value: 0x10f0}, // not a function
		sym("other", 0x10f0, 4), // 4 bytes, then uncovered to the end
	})
	want := []funcRange{
		{"a", 0x1000, 0x1010}, {"", 0x1010, 0x1020}, {"b", 0x1020, 0x1040}, {"c", 0x1040, 0x1050},
		{"inner", 0x1050, 0x1060}, {"", 0x1060, 0x10f0}, {"other", 0x10f0, 0x10f4}, {"", 0x10f4, 0x1100},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
