package elfpatch

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/arch/x86/x86asm"
)

// Site is one SYSCALL instruction: its virtual address, the function symbol
// containing it ("" if no function symbol covers it) and its offset from the
// start of that function (or of the uncovered stretch of text). Symbol is the
// ELF symbol name, so assembly functions carry the linker's ".abi0" suffix
// (runtime.write1.abi0); runtime/time_linux_amd64.s defines time.now.
type Site struct {
	Addr   uint64
	Symbol string
	Offset uint64
}

func (s Site) String() string {
	return fmt.Sprintf("%#x %s+%#x", s.Addr, s.Symbol, s.Offset)
}

// ScanSyscalls returns every SYSCALL instruction in f's executable sections
// that lies in a function for which allowed returns false (allowed may be nil:
// nothing is allowed), in address order.
//
// A byte search for 0f 05 would also match immediates and displacements, so
// each function is disassembled from its start (a linear sweep, which is
// exact for Go code: the toolchain puts no data in .text and pads between
// functions with INT3). Function bounds come from the STT_FUNC symbols: their
// size, or the next symbol's address when the size is 0. Text that no
// function covers is disassembled too and its sites reported with Symbol ""
// (allowed("") is asked like any other name), so nothing goes unseen. An
// instruction that cannot be decoded is an error naming the function and
// address rather than a silent skip, since skipping could hide a SYSCALL.
func ScanSyscalls(f *elf.File, allowed func(symbol string) bool) ([]Site, error) {
	if allowed == nil {
		allowed = func(string) bool { return false }
	}
	var sites []Site
	// Allowed functions are decoded too: a decoding failure there would mean
	// our idea of the instruction stream is wrong.
	err := decodeText(f, func(r funcRange, addr uint64, inst *x86asm.Inst) {
		if inst != nil && inst.Op == x86asm.SYSCALL && !allowed(r.name) {
			sites = append(sites, Site{Addr: addr, Symbol: r.name, Offset: addr - r.lo})
		}
	})
	if err != nil {
		return nil, err
	}
	return sites, nil
}

// decodeText disassembles every executable section of f, calling visit for
// each instruction in address order with the range it belongs to; inst is nil
// for the instructions whose length alone is decoded here (VEX, EVEX and the
// 0F38/0F3A opcode maps), none of which is a SYSCALL.
func decodeText(f *elf.File, visit func(r funcRange, addr uint64, inst *x86asm.Inst)) error {
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("elfpatch: scan: %v %v executable, want x86-64", f.Class, f.Machine)
	}
	syms, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("elfpatch: scan: reading symbol table (a stripped binary cannot be scanned): %w", err)
	}
	scanned := false
	for si, sec := range f.Sections {
		if sec.Type != elf.SHT_PROGBITS || sec.Flags&elf.SHF_EXECINSTR == 0 || sec.Size == 0 {
			continue
		}
		if sec.Addr+sec.Size < sec.Addr {
			return fmt.Errorf("elfpatch: scan: section %s wraps around the address space", sec.Name)
		}
		scanned = true
		code, err := sec.Data()
		if err != nil {
			return fmt.Errorf("elfpatch: scan: reading %s: %w", sec.Name, err)
		}
		if uint64(len(code)) != sec.Size {
			return fmt.Errorf("elfpatch: scan: %s: read %d bytes, want %d", sec.Name, len(code), sec.Size)
		}
		for _, r := range functionRanges(sec, elf.SectionIndex(si), syms) {
			if err := decodeRange(code[r.lo-sec.Addr:r.hi-sec.Addr], r, visit); err != nil {
				return err
			}
		}
	}
	if !scanned {
		return errors.New("elfpatch: scan: no executable sections")
	}
	return nil
}

// funcRange is a stretch of a section's code, [lo, hi) as virtual addresses,
// and the function it belongs to.
type funcRange struct {
	name   string
	lo, hi uint64
}

// functionRanges partitions sec into function ranges and the uncovered
// stretches between them, so that every byte is decoded exactly once.
func functionRanges(sec *elf.Section, idx elf.SectionIndex, syms []elf.Symbol) []funcRange {
	type fn struct {
		name       string
		addr, size uint64
	}
	end := sec.Addr + sec.Size
	var fns []fn
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section != idx || s.Value < sec.Addr || s.Value >= end {
			continue
		}
		fns = append(fns, fn{s.Name, s.Value, s.Size})
	}
	// At equal addresses prefer a sized symbol (runtime.text has size 0 and
	// shares its address with the first real function).
	sort.SliceStable(fns, func(i, j int) bool {
		if fns[i].addr != fns[j].addr {
			return fns[i].addr < fns[j].addr
		}
		return fns[i].size != 0 && fns[j].size == 0
	})
	var out []funcRange
	pos := sec.Addr
	for i := 0; i < len(fns); {
		f := fns[i]
		j := i + 1
		for j < len(fns) && fns[j].addr == f.addr {
			j++
		}
		next := end
		if j < len(fns) {
			next = fns[j].addr
		}
		hi := next
		if f.size != 0 && f.addr+f.size < next && f.addr+f.size > f.addr {
			hi = f.addr + f.size
		}
		if f.addr > pos {
			out = append(out, funcRange{"", pos, f.addr})
		}
		if f.addr >= pos {
			out = append(out, funcRange{f.name, f.addr, hi})
			pos = hi
		}
		i = j
	}
	if pos < end {
		out = append(out, funcRange{"", pos, end})
	}
	return out
}

// decodeRange decodes b, the code of r.
func decodeRange(b []byte, r funcRange, visit func(r funcRange, addr uint64, inst *x86asm.Inst)) error {
	for off := 0; off < len(b); {
		addr := r.lo + uint64(off)
		// Length-only decoding first for what x86asm gets wrong: it
		// decodes C5 xx as a two-byte LDS (losing step with the instruction
		// stream), and returns unknown 0F38/0F3A instructions such as ADCX
		// and ADOX (math/big) as a lone prefix byte.
		var n int
		var err error
		if isVEX(b[off:]) {
			if n = vexLen(b[off:]); n == 0 {
				err = errors.New("malformed or truncated VEX/EVEX instruction")
			}
		} else {
			n = legacyMapLen(b[off:])
		}
		if n > 0 {
			visit(r, addr, nil)
		} else if err == nil {
			var inst x86asm.Inst
			inst, err = x86asm.Decode(b[off:], 64)
			if err == nil && inst.Op == 0 {
				// A prefix followed by something x86asm does not know.
				err = x86asm.ErrUnrecognized
			}
			if err == nil {
				n = inst.Len
				visit(r, addr, &inst)
			}
		}
		if err != nil {
			name := r.name
			if name == "" {
				name = "text outside any function"
			}
			return fmt.Errorf("elfpatch: scan: cannot decode instruction at %#x (%s+%#x): % x: %v",
				addr, name, off, b[off:min(off+16, len(b))], err)
		}
		off += n
	}
	return nil
}
