package kernel

import "testing"

// The free stack hands back every page freed, zeroed, also across a chunk
// boundary (a freed page becomes a chunk once the current one is full).
func TestFreeStackAcrossChunks(t *testing.T) {
	fsTestSetup(t)
	const n = freeChunkCap + 20
	pages := make(map[uintptr]bool)
	var order []uintptr
	for range n {
		p := allocPage()
		*u64at(p + 64) = 0xdead
		pages[p] = true
		order = append(order, p)
	}
	before := freeBytes()
	listed := 0
	for _, p := range order {
		if freePage(p) {
			listed++
		}
	}
	if freeBytes() != before+n*pageSize {
		t.Fatalf("free bytes %d after freeing %d pages, want %d", freeBytes(), n, before+n*pageSize)
	}
	if listed != n-2 {
		t.Errorf("%d pages listed, want %d (two became chunks)", listed, n-2)
	}
	for range n {
		p := allocPage()
		if !pages[p] {
			t.Fatalf("allocPage returned %#x, not a freed page", p)
		}
		delete(pages, p)
		if *u64at(p + 64) != 0 || *u64at(p) != 0 {
			t.Fatalf("page %#x not zeroed", p)
		}
	}
}

// munmap frees the pages a mapping owned, keeps a shared file page, and
// drops the user-page cache's entries; MADV_DONTNEED leaves zero-fill
// markers that the next touch (userPrefix's check) fills with a zero page.
func TestUnmapPagesFreesAndMarks(t *testing.T) {
	ft := newFakeTables()
	useTables(t, ft)
	fsTestSetup(t)
	hostedTest, noTLB = false, true // walk the fake tables
	t.Cleanup(func() { hostedTest, noTLB = true, false })
	const va = 0x6000_0000_0000
	if !mapRange(va, 4*pageSize, false) {
		t.Fatal("mapRange failed")
	}
	filePage := allocPage()
	*u64at(filePage) = 42
	*u64at(pte(va + 4*pageSize)) = uint64(filePage) | pteP | pteW | pteU | pteShared
	userPages[(va/pageSize)%uintptr(len(userPages))] = va
	free := freeBytes()

	// MADV_DONTNEED on the first two pages.
	phys := virtToPhys(va)
	*u64at(phys) = 7
	if !unmapPages(va, va+2*pageSize, true) {
		t.Fatal("MADV_DONTNEED changed nothing")
	}
	if got := freeBytes(); got != free+2*pageSize {
		t.Errorf("MADV_DONTNEED freed %d bytes, want %d", got-free, 2*pageSize)
	}
	if e, _ := pteAt(va); *u64at(e) != pteZero {
		t.Errorf("entry after MADV_DONTNEED = %#x, want the zero-fill marker", *u64at(e))
	}
	if userPages[(va/pageSize)%uintptr(len(userPages))] != 0 {
		t.Error("the user-page cache still holds a released page")
	}
	if userPrefix(va, 8) != 8 {
		t.Fatal("a released page is not filled again on touch")
	}
	if p := virtToPhys(va); p == 0 || *u64at(p) != 0 {
		t.Errorf("released page reads %#x after the touch, want 0", *u64at(p))
	}

	// munmap of the whole 2 MiB block: owned pages freed, the file's page
	// kept, the block's page table freed.
	free = freeBytes()
	unmapPages(va, va+2<<20, false)
	if userPrefix(va, 8) != 0 || userPrefix(va+4*pageSize, 8) != 0 {
		t.Error("unmapped pages still count as the program's")
	}
	// 4 owned pages (two refilled by the touch) and the page table.
	if got := freeBytes() - free; got != 5*pageSize {
		t.Errorf("munmap freed %d bytes, want %d", got, 5*pageSize)
	}
	if *u64at(filePage) != 42 {
		t.Error("munmap freed or cleared a shared file page")
	}
}
