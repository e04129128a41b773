package guest

import (
	"debug/elf"
	"sort"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// The kernel's core runs without the Go runtime's services: on foreign
// stacks, before the runtime exists, inside system calls. So no kernel
// function may grow the stack (it must be nosplit), allocate, or hit a
// write barrier. This checks the machine code of a real image, so a
// forgotten //go:nosplit or an innocent-looking append is caught. The
// drivers the kernel calls (drivers/...) are held to the same rules.
func TestKernelCoreIsRuntimeFree(t *testing.T) {
	f, err := elf.Open(image(t, "../../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	byAddr := map[uint64]string{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			byAddr[s.Value] = s.Name
		}
	}
	forbidden := []string{"runtime.morestack", "runtime.newobject", "runtime.mallocgc", "runtime.growslice",
		"runtime.makeslice", "runtime.gcWriteBarrier", "runtime.wbMove", "runtime.wbZero", "runtime.typedmemmove",
		"runtime.convT", "runtime.concatstring", "runtime.newproc", "runtime.deferproc", "runtime.gopanic"}
	// User-facing exported functions run on goroutine stacks like any Go
	// code; only what they call must be core-safe.
	userFacing := map[string]bool{"github.com/amberos/amber/kernel.Mark": true}
	text := f.Section(".text")
	data, err := text.Data()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	var problems []string
	for _, s := range syms {
		core := strings.HasPrefix(s.Name, "github.com/amberos/amber/kernel.") || strings.HasPrefix(s.Name, "github.com/amberos/amber/drivers/")
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || !core || userFacing[s.Name] || s.Size == 0 {
			continue
		}
		code := data[s.Value-text.Addr : s.Value-text.Addr+s.Size]
		checked++
		for pc := 0; pc < len(code); {
			inst, err := x86asm.Decode(code[pc:], 64)
			if err != nil {
				pc++
				continue
			}
			if inst.Op == x86asm.CALL || inst.Op == x86asm.JMP {
				if rel, ok := inst.Args[0].(x86asm.Rel); ok {
					target := s.Value + uint64(pc) + uint64(inst.Len) + uint64(int64(rel))
					name := byAddr[target]
					for _, bad := range forbidden {
						if strings.HasPrefix(name, bad) {
							problems = append(problems, s.Name+" calls "+name)
						}
					}
				}
			}
			pc += inst.Len
		}
	}
	if checked < 50 {
		t.Fatalf("checked only %d kernel functions; is the symbol filter right?", checked)
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// The kernel's exception table is the address range of its user-copy
// routines (kernel/usercopy_amd64.s): a fault in [ucopy, uaccessFault) is
// a bad user address, resumed at uaccessFault. That needs the linker to
// keep the routines in their file's order with nothing between them; the
// kernel checks it at boot, and this checks it on a real image.
func TestUserCopyRoutinesInOrder(t *testing.T) {
	f, err := elf.Open(image(t, "../../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	const pkg = "github.com/amberos/amber/kernel."
	want := []string{"ucopy", "uclear", "uaccessFault", "uaccessEnd"}
	var funcs []elf.Symbol
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			funcs = append(funcs, s)
		}
	}
	sort.Slice(funcs, func(i, j int) bool { return funcs[i].Value < funcs[j].Value })
	first := -1
	for i, s := range funcs {
		if strings.TrimSuffix(s.Name, ".abi0") == pkg+want[0] {
			first = i
		}
	}
	if first < 0 || first+len(want) > len(funcs) {
		t.Fatalf("no %s%s in the image", pkg, want[0])
	}
	for k, name := range want {
		if got := strings.TrimSuffix(funcs[first+k].Name, ".abi0"); got != pkg+name {
			t.Errorf("function %d after %s is %s, want %s%s", k, want[0], got, pkg, name)
		}
	}
}
