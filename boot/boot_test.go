package boot

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

func tokens(s string) []string {
	var out []string
	b := []byte(s)
	dst := make([]byte, len(b))
	for {
		tok, rest, ok := NextToken(b, dst)
		if !ok {
			return out
		}
		out = append(out, string(tok))
		b = rest
	}
}

func TestCmdlineRoundTrip(t *testing.T) {
	args := []string{"plain", "", "with space", `quote"inside`, `back\slash`, "tab\there", "-flag", "--"}
	line := Cmdline([]string{"amber.argv0=app"}, []string{"K=V", "SPACED=a b"}, args)
	got := tokens(line)
	want := append([]string{"amber.argv0=app", "K=V", "SPACED=a b", "--"}, args...)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("round trip of %q:\n got %q\nwant %q", line, got, want)
	}
}

// An environment variable with a dotted name goes as amber.env=, so it is
// not taken for a kernel option; others as they are.
func TestCmdlineDottedEnv(t *testing.T) {
	got := tokens(Cmdline([]string{"amber.tick=off"}, []string{"my.var=1", "PLAIN=a.b", "amber.x=y z"}, nil))
	want := []string{"amber.tick=off", "amber.env=my.var=1", "PLAIN=a.b", "amber.env=amber.x=y z"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCmdlineRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab \t\"\\=-.x\n")
	for i := 0; i < 2000; i++ {
		var args []string
		for n := r.IntN(5); n > 0; n-- {
			b := make([]byte, r.IntN(8))
			for j := range b {
				b[j] = alphabet[r.IntN(len(alphabet))]
			}
			args = append(args, string(b))
		}
		got := tokens(Cmdline(nil, nil, args))
		if len(args) == 0 {
			if len(got) != 0 {
				t.Fatalf("no args gave tokens %q", got)
			}
			continue
		}
		if got[0] != "--" || strings.Join(got[1:], "\x00") != strings.Join(args, "\x00") {
			t.Fatalf("args %q came back as %q", args, got)
		}
	}
}

// The layouts are shared with assembly and with other PVH loaders.
func TestStructLayouts(t *testing.T) {
	if s := unsafe.Sizeof(StartInfo{}); s != 56 {
		t.Errorf("hvm_start_info is %d bytes, want 56", s)
	}
	if s := unsafe.Sizeof(MemmapEntry{}); s != 24 {
		t.Errorf("hvm_memmap_table_entry is %d bytes, want 24", s)
	}
	if s := binary.Size(TrapFrame{}); s != 22*8 {
		t.Errorf("TrapFrame is %d bytes, want %d (15 GPRs, vector, error, 5 hardware words)", s, 22*8)
	}
	if AmberInfoOffset < int(unsafe.Sizeof(StartInfo{})) || MemmapOffset < AmberInfoOffset+int(unsafe.Sizeof(AmberInfo{})) ||
		CmdlineOffset < MemmapOffset+MaxMemmapEntries*24 {
		t.Error("boot-info areas overlap")
	}
	if ret := unsafe.Offsetof(Hypercall{}.Ret); ret != 40 {
		t.Errorf("Hypercall.Ret at %d, the VMM writes it at 40", ret)
	}
}

func TestLayoutOrder(t *testing.T) {
	regions := []struct {
		name       string
		start, end uint64
	}{
		{"start info", StartInfoPA, StartInfoPA + StartInfoMax},
		{"GDT", GDTPA, GDTPA + GDTEntries*8},
		{"IDT", IDTPA, IDTPA + 4096},
		{"TSS", TSSPA, TSSPA + TSSLimit + 1},
		{"page tables", PML4PA, FirstPDPA + MaxBootPDs*0x1000},
		{"IST stacks", ISTPA, IST2Top},
		{"boot stack", IST2Top, BootStackTop},
		{"process stack", StackBottom, StackTop},
		{"image", ImageBase, MaxMemory},
	}
	for i := 1; i < len(regions); i++ {
		if regions[i].start < regions[i-1].end {
			t.Errorf("%s [%#x,%#x) overlaps %s [%#x,%#x)", regions[i].name, regions[i].start, regions[i].end,
				regions[i-1].name, regions[i-1].start, regions[i-1].end)
		}
	}
	if StartInfoPA < NullGuard {
		t.Error("boot info inside the unmapped null guard")
	}
}
