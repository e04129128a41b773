// Package crash writes the report the VMM prints when a guest dies: a triple
// fault, an exception the guest kernel did not handle, or a kernel panic.
//
// A dead unikernel leaves nothing behind but its vCPU registers and its
// memory, so the report has to be the post-mortem debugger: it says what
// went wrong (the exception and its decoded error code), shows the
// registers, disassembles the code at the faulting PC and walks the Go frame
// pointer chain into a symbolized backtrace, using the symbols of the image
// the guest was booted from.
//
// Everything read from the guest — registers, page tables, stack contents —
// is treated as hostile: a guest that crashed may have corrupted any of it,
// and a malicious one can shape it. Nothing in this package panics, reads
// outside guest memory or loops unboundedly whatever the guest left behind.
package crash

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Regs is the vCPU state at the time of the crash.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
	CS, SS                                 uint16
	FSBase, GSBase, CR2, CR3               uint64
}

// Memory reads guest-virtual memory. VirtMemory implements it over the
// guest's page tables.
type Memory interface {
	ReadVirt(va uint64, p []byte) error
}

// Report is everything known about a dead guest.
type Report struct {
	Reason    string // what the VMM saw, e.g. "triple fault", "kernel panic: ..."; may be empty
	Vector    int    // exception vector, or -1 if the crash was not an exception
	ErrorCode uint64 // the exception's error code, for vectors that push one
	Regs      Regs
	Mem       Memory   // nil if guest memory cannot be read
	Image     *Symbols // nil if the image's symbols are unavailable
}

const (
	maxFrames     = 64
	codeAfter     = 5    // instructions shown after the faulting one
	codeBefore    = 3    // instructions shown before it, when they can be found
	maxFuncDecode = 4096 // bytes decoded from a function's entry to find the instructions before RIP
)

// Write writes the report for r to w.
func Write(w io.Writer, r Report) error {
	var b bytes.Buffer
	func() {
		// Last line of defence: the VMM is about to exit with this report,
		// and a bug here must not replace the guest's crash with our own.
		defer func() {
			if p := recover(); p != nil {
				fmt.Fprintf(&b, "\n(crash report incomplete: internal error: %v)\n", p)
			}
		}()
		writeReason(&b, r)
		writeRegs(&b, r.Regs)
		fd := decodeAtPC(r)
		writeCode(&b, r, fd)
		writeBacktrace(&b, r, fd)
	}()
	_, err := w.Write(b.Bytes())
	return err
}

var vectorNames = [32]struct{ mnemonic, name string }{
	0: {"#DE", "divide error"}, 1: {"#DB", "debug exception"}, 2: {"NMI", "non-maskable interrupt"},
	3: {"#BP", "breakpoint"}, 4: {"#OF", "overflow"}, 5: {"#BR", "bound range exceeded"},
	6: {"#UD", "invalid opcode"}, 7: {"#NM", "device not available"}, 8: {"#DF", "double fault"},
	9: {"#MF", "coprocessor segment overrun"}, 10: {"#TS", "invalid TSS"}, 11: {"#NP", "segment not present"},
	12: {"#SS", "stack-segment fault"}, 13: {"#GP", "general protection fault"}, 14: {"#PF", "page fault"},
	15: {"", "reserved"}, 16: {"#MF", "x87 floating-point error"}, 17: {"#AC", "alignment check"},
	18: {"#MC", "machine check"}, 19: {"#XM", "SIMD floating-point exception"}, 20: {"#VE", "virtualization exception"},
	21: {"#CP", "control protection exception"}, 22: {"", "reserved"}, 23: {"", "reserved"},
	24: {"", "reserved"}, 25: {"", "reserved"}, 26: {"", "reserved"}, 27: {"", "reserved"},
	28: {"#HV", "hypervisor injection exception"}, 29: {"#VC", "VMM communication exception"},
	30: {"#SX", "security exception"}, 31: {"", "reserved"},
}

func vectorString(v int) string {
	if v < 0 || v >= len(vectorNames) {
		return fmt.Sprintf("interrupt (vector %d)", v)
	}
	n := vectorNames[v]
	if n.mnemonic == "" {
		return fmt.Sprintf("%s exception (vector %d)", n.name, v)
	}
	return fmt.Sprintf("%s (%s, vector %d)", n.name, n.mnemonic, v)
}

// hasErrorCode reports whether the CPU pushes an error code for vector v,
// so that a zero code is shown for those and omitted for the others.
func hasErrorCode(v int) bool {
	switch v {
	case 8, 10, 11, 12, 13, 14, 17, 21, 29, 30:
		return true
	}
	return false
}

func decodeErrorCode(v int, code uint64) string {
	switch v {
	case 14:
		var f []string
		switch {
		case code&(1<<4) != 0:
			f = append(f, "instruction fetch")
		case code&(1<<1) != 0:
			f = append(f, "write")
		default:
			f = append(f, "read")
		}
		if code&(1<<2) != 0 {
			f = append(f, "user")
		} else {
			f = append(f, "supervisor")
		}
		if code&1 != 0 {
			f = append(f, "protection violation")
		} else {
			f = append(f, "not present")
		}
		for _, b := range []struct {
			bit  uint
			name string
		}{{3, "reserved bit set"}, {5, "protection key"}, {6, "shadow stack"}, {15, "SGX"}} {
			if code&(1<<b.bit) != 0 {
				f = append(f, b.name)
			}
		}
		return strings.Join(f, ", ")
	case 10, 11, 12, 13, 17:
		if code == 0 {
			return ""
		}
		// A selector error code: which descriptor the CPU was loading.
		table := [4]string{"GDT", "IDT", "LDT", "IDT"}[code>>1&3]
		s := fmt.Sprintf("%s index %d", table, code>>3&0x1fff)
		if table == "IDT" {
			s = fmt.Sprintf("IDT vector %d", code>>3&0x1fff)
		}
		if code&1 != 0 {
			s += ", external event"
		}
		return s
	case 21:
		names := map[uint64]string{1: "near RET", 2: "far RET/IRET", 3: "ENDBRANCH missing", 4: "RSTORSSP", 5: "SETSSBSY"}
		if n, ok := names[code&0x7fff]; ok {
			return n
		}
	}
	return ""
}

func writeReason(b *bytes.Buffer, r Report) {
	b.WriteString("guest crashed")
	if r.Reason != "" {
		b.WriteString(": " + r.Reason)
	}
	if r.Vector >= 0 {
		b.WriteString(": " + vectorString(r.Vector))
		if r.Vector == 14 {
			fmt.Fprintf(b, " at %#x", r.Regs.CR2)
		}
		if hasErrorCode(r.Vector) || r.ErrorCode != 0 {
			fmt.Fprintf(b, ", error code %#x", r.ErrorCode)
			if d := decodeErrorCode(r.Vector, r.ErrorCode); d != "" {
				fmt.Fprintf(b, " (%s)", d)
			}
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(b, "pc=%#x %s\n", r.Regs.RIP, where(r.Image, r.Regs.RIP, false))
}

// where describes pc as "fn+0xoff (file:line)", or "(no symbol)".
func where(s *Symbols, pc uint64, isReturn bool) string {
	fn, file, line, entry, ok := lookupFrame(s, pc, isReturn)
	if !ok {
		return "(no symbol)"
	}
	out := fmt.Sprintf("%s+%#x", fn, pc-entry)
	if file != "" {
		out += fmt.Sprintf(" (%s:%d)", file, line)
	}
	return out
}

// lookupFrame symbolizes pc. A return address belongs to the instruction
// after the CALL, possibly on the next line or even in the next function,
// so, as Go's own traceback does, the position of pc-1 is reported instead.
func lookupFrame(s *Symbols, pc uint64, isReturn bool) (fn, file string, line int, entry uint64, ok bool) {
	q := pc
	if isReturn && q > 0 {
		q--
	}
	fn, file, line, ok = s.Lookup(q)
	if !ok {
		return "", "", 0, 0, false
	}
	entry, _, found := s.funcBounds(q)
	if !found || entry > pc {
		entry = pc
	}
	return fn, file, line, entry, true
}

var flagNames = []struct {
	bit  uint
	name string
}{
	{0, "CF"}, {2, "PF"}, {4, "AF"}, {6, "ZF"}, {7, "SF"}, {8, "TF"}, {9, "IF"}, {10, "DF"},
	{11, "OF"}, {14, "NT"}, {16, "RF"}, {17, "VM"}, {18, "AC"}, {19, "VIF"}, {20, "VIP"}, {21, "ID"},
}

func decodeRFLAGS(f uint64) string {
	var s []string
	for _, n := range flagNames {
		if f&(1<<n.bit) != 0 {
			s = append(s, n.name)
		}
	}
	s = append(s, fmt.Sprintf("IOPL=%d", f>>12&3))
	return strings.Join(s, " ")
}

func writeRegs(b *bytes.Buffer, g Regs) {
	regs := []struct {
		name string
		v    uint64
	}{
		{"rax", g.RAX}, {"rbx", g.RBX}, {"rcx", g.RCX},
		{"rdx", g.RDX}, {"rsi", g.RSI}, {"rdi", g.RDI},
		{"rsp", g.RSP}, {"rbp", g.RBP}, {"r8", g.R8},
		{"r9", g.R9}, {"r10", g.R10}, {"r11", g.R11},
		{"r12", g.R12}, {"r13", g.R13}, {"r14", g.R14},
		{"r15", g.R15}, {"rip", g.RIP}, {"rflags", g.RFLAGS},
		{"fsbase", g.FSBase}, {"gsbase", g.GSBase}, {"cr2", g.CR2},
	}
	b.WriteString("\nregisters:\n")
	for i, r := range regs {
		b.WriteString("  ")
		fmt.Fprintf(b, "%-6s %#016x", r.name, r.v)
		if i%3 == 2 {
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(b, "  %-6s %#016x  %-6s %#-18x  %-6s %#x\n", "cr3", g.CR3, "cs", g.CS, "ss", g.SS)
	fmt.Fprintf(b, "  rflags [%s]  cpl %d\n", decodeRFLAGS(g.RFLAGS), g.CS&3)
}

// readPrefix reads up to n bytes at va and returns as many leading bytes as
// are readable, one page at a time, so that code just before an unmapped
// page can still be shown.
func readPrefix(m Memory, va uint64, n int) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("guest memory not available")
	}
	buf := make([]byte, 0, n)
	for len(buf) < n {
		chunk := 0x1000 - int(va&0xfff)
		if chunk > n-len(buf) {
			chunk = n - len(buf)
		}
		p := make([]byte, chunk)
		if err := m.ReadVirt(va, p); err != nil {
			return buf, err
		}
		buf = append(buf, p...)
		if va+uint64(chunk) < va {
			break // end of the address space
		}
		va += uint64(chunk)
	}
	return buf, nil
}

type decoded struct {
	addr  uint64
	inst  x86asm.Inst
	bytes []byte
	err   error // instruction could not be decoded
}

// funcDecode is what the decoder learned about the code around RIP.
type funcDecode struct {
	before  []decoded // the function's instructions from its entry up to RIP, if it synced with RIP
	after   []decoded // RIP's instruction and the following ones
	readErr error     // code at RIP unreadable
	synced  bool      // before is complete: decoding from the entry landed exactly on RIP
}

// decode decodes one instruction, refusing to let a decoder bug take the
// report down with it.
func decode(code []byte) (inst x86asm.Inst, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder panic: %v", p)
		}
	}()
	return x86asm.Decode(code, 64)
}

func decodeAtPC(r Report) funcDecode {
	var fd funcDecode
	rip := r.Regs.RIP
	code, err := readPrefix(r.Mem, rip, 16*(codeAfter+1))
	if len(code) == 0 {
		fd.readErr = err
		return fd
	}
	// Stop at the end of RIP's function: what follows is INT3 padding and
	// then an unrelated function.
	if _, end, ok := r.Image.funcBounds(rip); ok && end > rip && end-rip < uint64(len(code)) {
		code = code[:end-rip]
	}
	for off := 0; len(fd.after) < codeAfter+1 && off < len(code); {
		inst, err := decode(code[off:])
		d := decoded{addr: rip + uint64(off), inst: inst, err: err}
		if err != nil {
			d.bytes = code[off:min(off+8, len(code))]
			fd.after = append(fd.after, d)
			break
		}
		d.bytes = code[off : off+inst.Len]
		fd.after = append(fd.after, d)
		off += inst.Len
	}

	// x86 code cannot be decoded backwards, but Go functions are plain
	// instruction sequences from their entry, so decoding forward from the
	// entry finds the instructions before RIP, if it lands on RIP exactly.
	entry, _, ok := r.Image.funcBounds(rip)
	if !ok || rip-entry > maxFuncDecode {
		return fd
	}
	if rip == entry {
		fd.synced = true
		return fd
	}
	body, _ := readPrefix(r.Mem, entry, int(rip-entry))
	if len(body) != int(rip-entry) {
		return fd
	}
	for off := 0; off < len(body); {
		inst, err := decode(body[off:])
		if err != nil {
			return fd
		}
		fd.before = append(fd.before, decoded{addr: entry + uint64(off), inst: inst, bytes: body[off : off+inst.Len]})
		off += inst.Len
	}
	fd.synced = true
	return fd
}

func writeCode(b *bytes.Buffer, r Report, fd funcDecode) {
	rip := r.Regs.RIP
	if len(fd.after) == 0 {
		fmt.Fprintf(b, "\ncode at pc=%#x: unreadable: %v\n", rip, fd.readErr)
		return
	}
	fmt.Fprintf(b, "\ncode at pc=%#x:\n", rip)
	if fd.synced {
		before := fd.before
		if len(before) > codeBefore {
			before = before[len(before)-codeBefore:]
		}
		for _, d := range before {
			writeInst(b, r.Image, d, false)
		}
	}
	for i, d := range fd.after {
		writeInst(b, r.Image, d, i == 0)
	}
	if last := fd.after[len(fd.after)-1]; last.err == nil && len(fd.after) < codeAfter+1 && fd.readErr != nil {
		fmt.Fprintf(b, "   (code after %#x unreadable: %v)\n", last.addr+uint64(last.inst.Len), fd.readErr)
	}
}

func writeInst(b *bytes.Buffer, s *Symbols, d decoded, atPC bool) {
	mark := "   "
	if atPC {
		mark = "=> "
	}
	loc := ""
	if name, base := s.Sym(d.addr); name != "" {
		loc = fmt.Sprintf("%s+%#x", name, d.addr-base)
	}
	var text string
	if d.err != nil {
		text = fmt.Sprintf("?? (cannot decode: %v)", d.err)
	} else {
		text = goSyntax(d.inst, d.addr, s)
	}
	fmt.Fprintf(b, "%s%#016x  %-28s %-22x %s\n", mark, d.addr, loc, d.bytes, text)
}

func goSyntax(inst x86asm.Inst, pc uint64, s *Symbols) (text string) {
	defer func() {
		if p := recover(); p != nil {
			text = fmt.Sprintf("%v (cannot format: %v)", inst.Op, p)
		}
	}()
	return x86asm.GoSyntax(inst, pc, s.Sym)
}

// frameZero works out where frame 0's caller is. Usually the function at RIP
// has run its prologue (PUSHQ BP; MOVQ SP, BP) and RBP points at its frame
// record. But a Go leaf function without a frame never pushes BP, and a
// fault can hit a function before its prologue or at its final RET; then RBP
// still holds the caller's frame pointer and the return address is on top
// of the stack, and following RBP alone would silently drop the caller. The
// instructions from the function's entry to RIP say which case this is.
// It returns the return address and true if it is on the stack rather than
// in RBP's frame record.
func frameZero(r Report, fd funcDecode) (ret uint64, onStack bool, how string) {
	if !fd.synced || len(fd.after) == 0 || fd.after[0].err != nil {
		return 0, false, ""
	}
	off := uint64(0)
	switch {
	case fd.after[0].inst.Op == x86asm.RET:
		how = "at RET"
	default:
		pushed, moved := false, false
		for _, d := range fd.before {
			switch {
			case !pushed && d.inst.Op == x86asm.PUSH && d.inst.Args[0] == x86asm.RBP:
				pushed = true
			case pushed && d.inst.Op == x86asm.MOV && d.inst.Args[0] == x86asm.RBP && d.inst.Args[1] == x86asm.RSP:
				moved = true
			}
			if moved {
				return 0, false, ""
			}
		}
		if pushed {
			off, how = 8, "after PUSHQ BP"
		} else {
			how = "frame not set up"
		}
	}
	var buf [8]byte
	if r.Mem == nil || r.Mem.ReadVirt(r.Regs.RSP+off, buf[:]) != nil {
		return 0, false, ""
	}
	ret = binary.LittleEndian.Uint64(buf[:])
	// Trust the stack only if it holds something that looks like a return
	// address; otherwise fall back to RBP.
	if ret == 0 {
		return 0, false, ""
	}
	if _, _, ok := r.Image.funcBounds(ret - 1); !ok {
		return 0, false, ""
	}
	return ret, true, how
}

func writeBacktrace(b *bytes.Buffer, r Report, fd funcDecode) {
	b.WriteString("\nbacktrace:\n")
	writeFrame(b, r.Image, r.Regs.RIP, false)
	frames := 1
	if ret, ok, _ := frameZero(r, fd); ok {
		writeFrame(b, r.Image, ret, true)
		frames++
	}
	fp := r.Regs.RBP
	var stop string
	for {
		if frames >= maxFrames {
			stop = fmt.Sprintf("reached the %d-frame limit", maxFrames)
			break
		}
		if fp == 0 {
			stop = "end of the frame-pointer chain (frame pointer is 0)"
			break
		}
		if fp&7 != 0 {
			stop = fmt.Sprintf("frame pointer %#x is misaligned", fp)
			break
		}
		var rec [16]byte
		if r.Mem == nil {
			stop = "guest memory not available"
			break
		}
		if err := r.Mem.ReadVirt(fp, rec[:]); err != nil {
			stop = fmt.Sprintf("frame pointer %#x is unreadable: %v", fp, err)
			break
		}
		next := binary.LittleEndian.Uint64(rec[0:])
		ret := binary.LittleEndian.Uint64(rec[8:])
		if ret == 0 {
			stop = fmt.Sprintf("return address at %#x is 0 (bottom of the stack)", fp+8)
			break
		}
		writeFrame(b, r.Image, ret, true)
		frames++
		// Stacks grow down, so each caller's frame record is above its
		// callee's; anything else is a corrupt or cyclic chain (or a switch
		// to another stack, which frame pointers alone cannot follow).
		if next != 0 && next <= fp {
			stop = fmt.Sprintf("saved frame pointer %#x at %#x is not above it (corrupt or cyclic chain, or a stack switch)", next, fp)
			break
		}
		fp = next
	}
	fmt.Fprintf(b, "backtrace stopped: %s\n", stop)
}

func writeFrame(b *bytes.Buffer, s *Symbols, pc uint64, isReturn bool) {
	fn, file, line, entry, ok := lookupFrame(s, pc, isReturn)
	if !ok {
		fmt.Fprintf(b, "?()\n\t?:0 pc=%#x\n", pc)
		return
	}
	if file == "" {
		file = "?"
	}
	fmt.Fprintf(b, "%s()\n\t%s:%d +%#x pc=%#x\n", fn, file, line, pc-entry, pc)
}
