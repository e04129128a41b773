package crash

import (
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"sort"
)

// Symbols maps addresses in a guest image to names and source lines.
type Symbols struct {
	syms  []symbol     // sorted by addr; from the ELF symtab, or the pclntab's functions
	table *gosym.Table // nil if the image has no usable .gopclntab
}

type symbol struct {
	name       string
	addr, size uint64 // size 0: unknown, extends to the next symbol
	fn         bool
}

// LoadSymbols reads the image's ELF symbol table (for code and data names, so
// that disassembly can name memory operands too) and its Go pclntab (for
// file:line, and for function names if the image was stripped with -s).
// Either one is enough; it fails only if the image has neither.
func LoadSymbols(f *elf.File) (s *Symbols, err error) {
	// The image may come from a snapshot store rather than the build, so its
	// tables are not trusted to be well formed and debug/gosym is not
	// hardened against that.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed symbol tables: %v", r)
		}
	}()
	s = &Symbols{}
	var errs []error

	elfSyms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		errs = append(errs, fmt.Errorf("ELF symbol table: %w", err))
	}
	textStart := uint64(0)
	for _, es := range elfSyms {
		typ := elf.ST_TYPE(es.Info)
		if es.Name == "runtime.text" {
			textStart = es.Value
		}
		if es.Value == 0 || es.Section == elf.SHN_UNDEF || (typ != elf.STT_FUNC && typ != elf.STT_OBJECT) {
			continue
		}
		s.syms = append(s.syms, symbol{name: es.Name, addr: es.Value, size: es.Size, fn: typ == elf.STT_FUNC})
	}

	if sec := f.Section(".gopclntab"); sec != nil {
		if textStart == 0 {
			if t := f.Section(".text"); t != nil {
				textStart = t.Addr
			}
		}
		if data, err := sec.Data(); err != nil {
			errs = append(errs, fmt.Errorf(".gopclntab: %w", err))
		} else if tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart)); err != nil {
			errs = append(errs, fmt.Errorf(".gopclntab: %w", err))
		} else {
			s.table = tab
		}
	} else {
		errs = append(errs, errors.New("no .gopclntab section"))
	}

	if len(s.syms) == 0 && s.table != nil {
		for _, fn := range s.table.Funcs {
			s.syms = append(s.syms, symbol{name: fn.Name, addr: fn.Entry, size: fn.End - fn.Entry, fn: true})
		}
	}
	if len(s.syms) == 0 && s.table == nil {
		return nil, fmt.Errorf("image has no symbols: %w", errors.Join(errs...))
	}
	sort.SliceStable(s.syms, func(i, j int) bool {
		a, b := s.syms[i], s.syms[j]
		if a.addr != b.addr {
			return a.addr < b.addr
		}
		return a.size < b.size
	})
	// Of several symbols at one address keep the largest, so that zero-size
	// markers such as runtime.text do not hide the function they sit on.
	out := s.syms[:0]
	for i, sym := range s.syms {
		if i+1 < len(s.syms) && s.syms[i+1].addr == sym.addr {
			continue
		}
		out = append(out, sym)
	}
	s.syms = out
	return s, nil
}

// Lookup returns the function containing pc and the source position of the
// instruction at pc. For a PC inside inlined code, file:line is that of the
// inlined body while fn is the function it was inlined into (debug/gosym
// does not expose the inlining tree).
func (s *Symbols) Lookup(pc uint64) (fn string, file string, line int, ok bool) {
	if s == nil {
		return "", "", 0, false
	}
	if s.table != nil {
		func() {
			defer func() { _ = recover() }() // see LoadSymbols
			var f *gosym.Func
			file, line, f = s.table.PCToLine(pc)
			if f != nil {
				fn, ok = f.Name, true
			}
		}()
		if ok {
			return fn, file, line, true
		}
	}
	if sym, _, found := s.symbolAt(pc); found && sym.fn {
		return sym.name, "", 0, true
	}
	return "", "", 0, false
}

// Sym returns the symbol containing addr and addr's offset in it, the shape
// x86asm.SymLookup wants. It returns "" if addr is in no symbol.
func (s *Symbols) Sym(addr uint64) (name string, base uint64) {
	if sym, _, ok := s.symbolAt(addr); ok {
		return sym.name, sym.addr
	}
	return "", 0
}

// symbolAt finds the last symbol starting at or below addr that covers it.
func (s *Symbols) symbolAt(addr uint64) (symbol, int, bool) {
	if s == nil {
		return symbol{}, 0, false
	}
	i := sort.Search(len(s.syms), func(i int) bool { return s.syms[i].addr > addr }) - 1
	if i < 0 {
		return symbol{}, 0, false
	}
	sym := s.syms[i]
	if sym.size != 0 && addr-sym.addr >= sym.size {
		return symbol{}, 0, false
	}
	if sym.size == 0 && i+1 == len(s.syms) {
		// An unsized last symbol would otherwise claim all of memory above it.
		return symbol{}, 0, false
	}
	return sym, i, true
}

// funcBounds returns the [entry, end) of the function containing pc, or
// ok=false if pc is not in a known function. The ELF symbol's size is
// preferred because the pclntab's End is the next function's entry, which
// would count the INT3 padding between functions as code.
func (s *Symbols) funcBounds(pc uint64) (entry, end uint64, ok bool) {
	if s == nil {
		return 0, 0, false
	}
	sym, i, found := s.symbolAt(pc)
	if found && sym.fn && sym.size != 0 {
		return sym.addr, sym.addr + sym.size, true
	}
	if s.table != nil {
		var f *gosym.Func
		func() {
			defer func() { _ = recover() }()
			f = s.table.PCToFunc(pc)
		}()
		if f != nil {
			return f.Entry, f.End, true
		}
	}
	if !found || !sym.fn {
		return 0, 0, false
	}
	return sym.addr, s.syms[i+1].addr, true // symbolAt never returns an unsized last symbol
}
