// Package kernel is Amber's guest kernel: linked into an ordinary Go
// program by `vmm build`, it boots the VM, answers the Go runtime's system
// calls as direct function calls, and schedules the runtime's threads.
//
// The code lives in two worlds (docs/architecture.md). The core — boot, the system-call
// and trap entries, the scheduler, futexes, memory mapping, time — runs on
// the calling thread's kernel stack with no Go runtime services: every core
// function is //go:nosplit, allocates nothing, keeps no Go pointers in its
// tables (addresses are uintptr, threads are indexes) so no write barrier is
// ever emitted, and reads user memory through unsafe addresses. Services
// (files, sockets, block I/O) will be ordinary goroutines started once the
// runtime is up; the core only queues requests to them.
package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// percpu is the block GS points at. The first two fields are used by
// entry_amd64.s (CPU_KSTACK, CPU_INTICK).
type percpu struct {
	kstackTop uintptr // kernel stack of the running thread
	// inTick is set while a timer tick is being served: a tick that
	// arrives meanwhile is only acknowledged (timerEntry), so ticks never
	// nest more than one deep however late the host runs the vCPU.
	inTick uintptr
	// inIRQ is set while a device interrupt is being served, from the
	// entry (irqEntry) to the last instructions before its IRETQ: a
	// device interrupt that arrives meanwhile is recorded in irqPending
	// and acknowledged, and the running handler serves it (irq.go).
	inIRQ uintptr
	// irqAX and irqBX keep irqEntry's two scratch registers while it
	// moves to a kernel stack: nothing else can run there but a pending
	// record, which saves nothing here.
	irqAX, irqBX uintptr
	cur          int // index of the running thread in threads
	hc           boot.Hypercall
}

var cpu0 percpu

// bootTLS is the thread-local block FS points at until the runtime calls
// arch_prctl(ARCH_SET_FS): its word at -8(FS) reads as a nil g.
var bootTLS [4]uint64

// Implemented in entry_amd64.s.
func start()
func syscallEntry()
func lstarEntry()
func forkRet()
func forkRetPC() uintptr
func lstarEntryPC() uintptr
func swtch(save *uintptr, next uintptr)
func hypercall(block uintptr)
func rdtsc() uint64
func rdrand() (v uint64, ok bool)
func wrfsbase(v uintptr)
func cpuid(leaf, sub uint32) (a, b, c, d uint32)
func xsave(area uintptr)
func jumpTo(ksp uintptr)
func timerEntryPC() uintptr
func irqEntry()
func irqPendingEntry()
func markCall(id uint64)

// vectorTable holds the addresses of the 256 IDT entry stubs (vectors_amd64.s).
var vectorTable [256]uintptr

// ptr turns an address into a pointer. Core code reads and writes user
// memory and page tables by address; the Go heap is never involved.
//
//go:nosplit
func ptr(addr uintptr) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(nil), addr)
}

//go:nosplit
func u64at(addr uintptr) *uint64 { return (*uint64)(ptr(addr)) }

//go:nosplit
func u32at(addr uintptr) *uint32 { return (*uint32)(ptr(addr)) }

// userBytes views n bytes of memory at addr. For memory the program named
// it comes after a check (uaccess.go); copies use ucopy instead.
//
//go:nosplit
func userBytes(addr, n uintptr) []byte {
	return unsafe.Slice((*byte)(ptr(addr)), n)
}

// hcall issues a hypercall through the per-CPU request block.
//
//go:nosplit
func hcall(nr, a0, a1, a2 uint64) int64 {
	h := &cpu0.hc
	h.Nr, h.A0, h.A1, h.A2, h.Ret = nr, a0, a1, a2, 0
	hypercall(uintptr(unsafe.Pointer(h)))
	return h.Ret
}
