package vmm

import (
	"debug/elf"
	"sync/atomic"
	"unsafe"

	"github.com/amberos/amber/boot"
	"golang.org/x/sys/unix"
)

// The boot working set. On this kind of host nearly all of a boot's time
// before main() is the host's page faults as the guest first touches its
// pages (docs/benchmarks.md): a page the host has not backed yet costs
// several times what a populated one does. Populating all of RAM made boot
// faster but VM creation 25x slower; populating the pages a boot touches,
// before the memory slot is registered, costs a fraction of the faults it
// saves.
//
// The set is computed from the image's layout and the kernel's memory
// layout, not recorded from a run: it needs no boot at build time (there
// may be no KVM there) and no file beside the image, cannot go stale, and
// works for any image. What it holds was measured under QEMU (a boot of
// hello to its exit with guest RAM in a memory file, whose resident pages
// were read afterwards; docs/benchmarks.md). Outside the image a boot
// touches the tops of the low stacks (the main thread's 5 pages, the boot
// stack's 2, IST1's 3), the top 3 pages of each of the first three kernel
// stacks at the top of RAM, all of the first 19 pages the kernel's page
// allocator hands out after the image and 27 of the first 32 (page tables,
// the runtime's first metadata), then ~130 pages scattered at one in three
// over the next 1.4 MiB. Inside the image: the data (copied in by load, so
// populated already), the bss, and whatever text and read-only data the
// boot reads. Populating a page costs about what the first touch of an
// unpopulated page costs beyond that of a populated one (both allocate and
// clear it), so only the dense parts are worth it: the scattered heap
// pages are left to the guest. So are the image's read-only pages: mapping
// them all (MADV_POPULATE_READ) costs little where the file is in the
// page cache (0.23 ms for hello), but reads all of it where it is not
// (3.5 s of `vmm run` nested, over 9p), while a boot reads part of them
// and the host maps 16 file pages per fault anyway.
//
// It is off by default (Config.Prefault, vmm run --prefault): measured
// nested it made the guest's run faster but not `vmm run` as a whole
// (docs/benchmarks.md).

const (
	// bootHeap is the dense start of what the kernel's bump allocator
	// (kernel/mem.go) hands out after the image.
	bootHeap = 128 << 10
	// bootStackDepth is how deep a boot reaches into a stack; the main
	// thread's goes deeper.
	bootStackDepth     = 12 << 10
	bootMainStackDepth = 20 << 10
	// bootKernelStacks is how many threads (each with its own kernel
	// stack) the runtime has started by main: main, sysmon, a GC worker.
	bootKernelStacks = 3
)

// populate makes the host back the pages of the boot working set of img in
// m (whose size is the guest's RAM), before KVM knows about m: anonymous
// pages are allocated and zeroed.
func (img *Image) populate(m *GuestMemory) {
	ram := m.Size()
	write := func(lo, hi uint64) {
		lo &^= boot.PageSize - 1
		hi = min((hi+boot.PageSize-1)&^(boot.PageSize-1), ram)
		if lo < hi {
			populateRange(m.mem[lo:hi], true)
		}
	}
	// The low stacks, top first.
	write(boot.StackTop-bootMainStackDepth, boot.StackTop)
	write(boot.BootStackTop-bootStackDepth, boot.BootStackTop)
	write(boot.IST1Top-bootStackDepth, boot.IST1Top)
	for _, p := range img.segments {
		if p.Flags&elf.PF_W != 0 {
			write(p.Paddr+p.Filesz, p.Paddr+p.Memsz) // the bss
		}
	}
	heap := (img.End + boot.PageSize - 1) &^ (boot.PageSize - 1)
	stacks := ram - bootKernelStacks*boot.KernelStackSize
	write(heap, min(heap+bootHeap, stacks))
	for i := uint64(0); i < bootKernelStacks; i++ {
		top := ram - i*boot.KernelStackSize
		write(max(top-bootStackDepth, heap), top)
	}
}

// populateRange backs b's pages: MADV_POPULATE_WRITE (allocated, zeroed,
// mapped writable) or MADV_POPULATE_READ (a file's pages mapped), one
// system call; before Linux 5.14, a loop that touches each page.
func populateRange(b []byte, write bool) {
	advice := unix.MADV_POPULATE_READ
	if write {
		advice = unix.MADV_POPULATE_WRITE
	}
	if unix.Madvise(b, advice) == nil {
		return
	}
	for i := 0; i < len(b); i += boot.PageSize {
		w := (*uint64)(unsafe.Pointer(&b[i])) // page-aligned
		if write {
			atomic.AddUint64(w, 0) // a write that changes nothing
		} else {
			atomic.LoadUint64(w)
		}
	}
}
