package kernel

import (
	"testing"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// The user-memory checks on the host: page tables built in an ordinary
// buffer describe this process's own memory (the walk only reads the
// tables), so userPrefix is checked against them and the copies it
// allows really happen.

type fakeTables struct {
	pool []byte
	next uintptr
	root uintptr
}

func newFakeTables() *fakeTables {
	ft := &fakeTables{pool: make([]byte, 64*pageSize)}
	ft.next = (uintptr(unsafe.Pointer(&ft.pool[0])) + pageSize - 1) &^ (pageSize - 1)
	ft.root = ft.page()
	return ft
}

func (ft *fakeTables) page() uintptr {
	p := ft.next
	ft.next += pageSize
	return p
}

// entry returns the address of va's entry at level (0: the page table),
// making the tables above it.
func (ft *fakeTables) entry(va uintptr, level int) *uint64 {
	table := ft.root
	for l := 3; l > level; l-- {
		e := u64at(table + (va>>(12+9*uint(l))&511)*8)
		if *e == 0 {
			*e = uint64(ft.page()) | pteP | pteW | pteU
		}
		table = uintptr(*e & pteAddrMask)
	}
	return u64at(table + (va>>(12+9*uint(level))&511)*8)
}

func (ft *fakeTables) mapPage(va uintptr, flags uint64) {
	*ft.entry(va, 0) = uint64(va&^(pageSize-1)) | flags
}

// useTables points the kernel's globals at ft for one test.
func useTables(t *testing.T, ft *fakeTables) {
	saved := [...]uintptr{pml4, ramEnd, poolStart}
	savedHosted, savedNlazy := hostedTest, nlazy
	pml4, ramEnd, poolStart, hostedTest, nlazy = ft.root, 0, 0, false, 0
	userPages = [len(userPages)]uintptr{}
	t.Cleanup(func() {
		pml4, ramEnd, poolStart = saved[0], saved[1], saved[2]
		hostedTest, nlazy = savedHosted, savedNlazy
		userPages = [len(userPages)]uintptr{}
	})
}

func TestUserPrefix(t *testing.T) {
	ft := newFakeTables()
	mem := make([]byte, 8*pageSize)
	base := (uintptr(unsafe.Pointer(&mem[0])) + pageSize - 1) &^ (pageSize - 1)
	ft.mapPage(base, pteP|pteW|pteU)
	ft.mapPage(base+pageSize, pteP|pteW|pteU)
	// base+2 pages: not mapped; base+3 pages: mapped without the U bit.
	ft.mapPage(base+3*pageSize, pteP|pteW)
	ft.mapPage(base+4*pageSize, pteP|pteW|pteU)
	// A 2 MiB page far from the buffer (never touched: only the tables are).
	const huge = 0x5000_0000_0000
	*ft.entry(huge, 1) = huge | pteP | pteW | pteU | ptePS
	useTables(t, ft)

	// Mapped pages are remembered (mappings never go away), unmapped ones
	// are not. Checked before the cases below, whose 2 MiB page may share
	// a cache slot with base (the buffer's address decides).
	userPrefix(base, 3*pageSize)
	if userPages[(base/pageSize)%uintptr(len(userPages))] != base {
		t.Error("a mapped page was not cached")
	}
	if p := base + 2*pageSize; userPages[(p/pageSize)%uintptr(len(userPages))] == p {
		t.Error("an unmapped page was cached")
	}

	for _, c := range []struct {
		name       string
		addr, n    uintptr
		want       uintptr
		wantCached bool
	}{
		{"two mapped pages", base, 2 * pageSize, 2 * pageSize, true},
		{"runs into an unmapped page", base + 10, 3 * pageSize, 2*pageSize - 10, false},
		{"starts in an unmapped page", base + 2*pageSize, 10, 0, false},
		{"a page without the U bit", base + 3*pageSize, 10, 0, false},
		{"inside a 2 MiB page", huge + 100, 1 << 20, 1 << 20, false},
		{"past a 2 MiB page", huge + 100, 4 << 20, 2<<20 - 100, false},
		{"empty", base, 0, 0, false},
		{"below the null guard", 0x1000, 10, 0, false},
		{"at the top of user space", userLimit - 8, 100, 0, false},
		{"non-canonical", 0xdead_0000_0000_0000, 8, 0, false},
		{"wrapping", ^uintptr(0) - 5, 10, 0, false},
	} {
		if got := userPrefix(c.addr, c.n); got != c.want {
			t.Errorf("%s: userPrefix(%#x, %#x) = %#x, want %#x", c.name, c.addr, c.n, got, c.want)
		}
	}

	// Copies stop where the program's memory does.
	src := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if !copyOut(base+pageSize, unsafe.Pointer(&src), 8) || mem[base+pageSize-uintptr(unsafe.Pointer(&mem[0]))+7] != 8 {
		t.Error("copyOut into a mapped page failed")
	}
	if copyOut(base+2*pageSize-4, unsafe.Pointer(&src), 8) {
		t.Error("copyOut across into an unmapped page succeeded")
	}
	if n := copyOutSome(base+2*pageSize-4, unsafe.Pointer(&src), 8); n != 4 {
		t.Errorf("copyOutSome across into an unmapped page copied %d, want 4", n)
	}
	var dst [8]byte
	if n := copyInSome(unsafe.Pointer(&dst), base+2*pageSize-4, 8); n != 4 || dst[3] != 4 {
		t.Errorf("copyInSome copied %d (%v), want 4", n, dst)
	}
	if n := clearUserSome(base+2*pageSize-4, 8); n != 4 || mem[base+2*pageSize-1-uintptr(unsafe.Pointer(&mem[0]))] != 0 {
		t.Errorf("clearUserSome cleared %d, want 4", n)
	}

	// Strings: EFAULT when one runs into unmapped memory before its NUL.
	var out [maxPathLen + 1]byte
	o := uintptr(unsafe.Pointer(&out[0]))
	end := base + 2*pageSize
	copy(mem[end-4-uintptr(unsafe.Pointer(&mem[0])):], "abc\x00")
	if r := strFromUser(o, end-4, maxPathLen); r != 3 || string(out[:3]) != "abc" {
		t.Errorf("strFromUser of a string ending at a page's end = %d %q", r, out[:3])
	}
	copy(mem[end-4-uintptr(unsafe.Pointer(&mem[0])):], "abcd")
	if r := strFromUser(o, end-4, maxPathLen); r != -eFAULT {
		t.Errorf("strFromUser of a string running into an unmapped page = %d, want -EFAULT", r)
	}
	if r := strFromUser(o, 0, maxPathLen); r != -eFAULT {
		t.Errorf("strFromUser(NULL) = %d, want -EFAULT", r)
	}
	long := make([]byte, maxPathLen+8)
	for i := range long {
		long[i] = 'x'
	}
	hostedTest = true
	if r := strFromUser(o, uintptr(unsafe.Pointer(&long[0])), maxPathLen); r != -eNAMETOOLONG {
		t.Errorf("strFromUser of %d bytes without a NUL = %d, want -ENAMETOOLONG", len(long), r)
	}
}

// A page of a lazy mapping is
// filled by the check itself, as Linux's fault-in does, so the copy
// that follows does not fault.
func TestUserPrefixFillsLazyMappings(t *testing.T) {
	ft := newFakeTables()
	useTables(t, ft)
	ram := make([]byte, 128*pageSize)
	savedNext, savedEnd, savedFree, savedNfree := physNext, physEnd, freeList, nfree
	physNext = (uintptr(unsafe.Pointer(&ram[0])) + pageSize - 1) &^ (pageSize - 1)
	physEnd, freeList, nfree = physNext+127*pageSize, 0, 0
	savedLazy := lazy[0]
	t.Cleanup(func() {
		physNext, physEnd, freeList, nfree = savedNext, savedEnd, savedFree, savedNfree
		lazy[0] = savedLazy
	})
	// Only the tables are touched: the range itself is never accessed.
	const va = 0x6000_0000_0000
	lazy[0].start, lazy[0].end = va, va+lazyMin
	nlazy = 1
	if got := userPrefix(va+lazyChunk-8, 16); got != 16 {
		t.Errorf("userPrefix across two chunks of a lazy mapping = %d, want 16", got)
	}
	for _, a := range []uintptr{va + lazyChunk - pageSize, va + lazyChunk} {
		if _, ok := pageSpan(a); !ok {
			t.Errorf("page %#x of the lazy mapping was not filled", a)
		}
	}
	if got := userPrefix(va+lazyMin-8, 16); got != 8 {
		t.Errorf("userPrefix past the end of a lazy mapping = %d, want 8", got)
	}
}

func TestKernelOnlyCut(t *testing.T) {
	savedRAM, savedPool := ramEnd, poolStart
	defer func() { ramEnd, poolStart = savedRAM, savedPool }()
	// Far above this test binary's own variables.
	ramEnd, poolStart = 0x20_0000_0000, 0x10_0000_0000
	for _, c := range []struct {
		name           string
		addr, end, cut uintptr
	}{
		{"exception stacks", 0x40000, 0x41000, 0x40000},
		{"the process stack", boot.StackBottom, boot.StackTop, boot.StackTop},
		{"past the process stack", boot.StackTop - 16, boot.StackTop + 16, boot.StackTop},
		{"the image", boot.ImageBase, boot.ImageBase + 0x1000, boot.ImageBase + 0x1000},
		{"into the page pool", 0xf_ffff_0000, 0x10_0001_0000, 0x10_0000_0000},
		{"above RAM", 0x20_0000_0000, 0x20_0001_0000, 0x20_0001_0000},
		{"into the kernel stacks at the pool's top", 0x20_0000_0000 - 8*kstackSize, 0x20_0000_0000, 0x20_0000_0000 - 8*kstackSize},
		{"the LAPIC", lapicBase + 0x300, lapicBase + 0x310, lapicBase + 0x300},
		{"high memory", 0x2000_0000_0000, 0x2000_0001_0000, 0x2000_0001_0000},
	} {
		if got := kernelOnlyCut(c.addr, c.end); got != c.cut {
			t.Errorf("%s: kernelOnlyCut(%#x, %#x) = %#x, want %#x", c.name, c.addr, c.end, got, c.cut)
		}
	}
}
