package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// User memory. The whole guest runs at CPL3 in one address space and every
// page is user-accessible, so the MMU cannot tell the program's memory from
// the kernel's, and a system call given a bad address would fault in the
// kernel. As on Linux, such a call fails with EFAULT instead, in two steps:
//
//   - Checks first. Before a system call touches a range the program named,
//     userPrefix finds how much of it is the program's: below userLimit
//     (TASK_SIZE), outside the kernel-only ranges (kernelOnlyCut), and
//     mapped page by page — a page of a lazy mapping is filled first, as
//     Linux's fault-in does. The kernel is never preempted and there is one
//     vCPU, so a range found valid stays valid until the call blocks; a
//     page another thread unmaps meanwhile is the exception table's case
//     (EFAULT), one it released with MADV_DONTNEED is filled again by the
//     page-fault handler.
//   - An exception table behind them. The copies themselves go through
//     ucopy and uclear (usercopy_amd64.s); a #PF or #GP at one of their
//     instructions, on the running thread's kernel stack, resumes at
//     uaccessFault, which returns the bytes left uncopied (uaccessFixup).
//     A fault anywhere else in the kernel is still a crash report.
//
// Code that hands user memory to something other than these routines (the
// console's driver, signal frames written from exception handlers) relies
// on the checks alone, and checks first. Exception handlers never use the
// routines: a fault there would be delivered on the IST stack the handler
// is running on, over its own frame.

// maxRW caps one transfer, like Linux's MAX_RW_COUNT.
const maxRW = 0x7ffff000

// hostedTest is set by the kernel's tests, which run the file system on
// the host: no page tables to consult, and the host guards the memory.
var hostedTest bool

// poolStart is where the page allocator's memory begins: the identity
// mapping above it holds page tables, file data and pipe buffers.
var poolStart uintptr

// userPages caches pages found mapped for the program; munmap and
// MADV_DONTNEED drop the entries of the pages they unmap
// (forgetUserPages).
var userPages [64]uintptr

// uaccessFaults counts the faults the exception table turned into EFAULT.
var uaccessFaults uint64

// Implemented in usercopy_amd64.s.

// ucopy copies n bytes from src to dst and returns how many it did not
// copy (0 unless it faulted).
//
//go:noescape
func ucopy(dst, src unsafe.Pointer, n uintptr) (left uintptr)

// uclear zeroes n bytes at dst; like ucopy.
//
//go:noescape
func uclear(dst, unused unsafe.Pointer, n uintptr) (left uintptr)

func uaccessFault(dst, src unsafe.Pointer, n uintptr) (left uintptr)
func uaccessEnd()
func uaccessPCs() (cp, cl, fault, end uintptr)

// uaccessCheck makes sure at boot that the linker kept the user-copy
// routines in their file's order, which uaccessFixup relies on.
//
//go:nosplit
func uaccessCheck() {
	cp, cl, fault, end := uaccessPCs()
	if !(cp < cl && cl < fault && fault < end && end-cp < 1024) {
		kfatal("boot: the user-copy routines are not laid out in order")
	}
}

// uaccessFixup redirects a fault in a user-copy routine, raised while a
// system call runs on the thread's kernel stack, to uaccessFault.
//
//go:nosplit
func uaccessFixup(tf *boot.TrapFrame) bool {
	if tf.Vector != vecPF && tf.Vector != vecGP {
		return false
	}
	begin, _, fault, _ := uaccessPCs()
	rip, sp, top := uintptr(tf.RIP), uintptr(tf.RSP), cpu0.kstackTop
	if rip < begin || rip >= fault || sp <= top-kstackSize || sp > top {
		return false
	}
	tf.RIP = uint64(fault)
	uaccessFaults++
	return true
}

// clip lowers cut to the start of [s, e) when that range meets [addr, cut).
//
//go:nosplit
func clip(addr, cut, s, e uintptr) uintptr {
	if addr < e && s < cut {
		if s < addr {
			return addr
		}
		return s
	}
	return cut
}

// kernelOnlyCut returns the first address in [addr, end) that no system
// call may touch for the program, or end. These ranges are mapped (the
// kernel needs them at CPL3) but are the kernel's alone: the boot
// structures, exception and boot stacks below the process stack, the page
// pool reachable through the identity mapping above the image (the
// threads' kernel stacks at its top, sched.go) and the LAPIC's registers. The kernel's other
// variables share the image with the program's and are not told apart.
//
//go:nosplit
func kernelOnlyCut(addr, end uintptr) uintptr {
	cut := clip(addr, end, 0, boot.StackBottom)
	cut = clip(addr, cut, boot.StackTop, boot.ImageBase)
	if poolStart != 0 {
		cut = clip(addr, cut, poolStart, ramEnd)
	}
	lapic := uintptr(lapicBase) &^ (boot.HugePageSize - 1)
	return clip(addr, cut, lapic, lapic+boot.HugePageSize)
}

// pageSpan walks the page tables for va: the size of the unit that maps
// it (4 KiB, 2 MiB or 1 GiB) and true, or the size of the unmapped unit
// around it (so a scan can skip it whole) and false.
//
//go:nosplit
func pageSpan(va uintptr) (uintptr, bool) {
	table := pml4
	for level := 3; level >= 0; level-- {
		size := uintptr(1) << (12 + 9*uint(level))
		e := *u64at(table + ((va>>(12+9*uint(level)))&511)*8)
		if e&(pteP|pteU) != pteP|pteU {
			return size, false
		}
		if level == 0 || e&ptePS != 0 {
			return size, true
		}
		table = uintptr(e & pteAddrMask)
	}
	return boot.PageSize, false
}

// lazyFaultFn is called indirectly: the linker's nosplit check starts
// afresh behind an indirect call, and userPageSize sits deep in the file
// system's chains.
var lazyFaultFn = lazyFault

// userPageSize reports whether the page holding va is mapped for the
// program, filling it first if it belongs to a lazy mapping: the size of
// the unit mapping it, or 0.
//
//go:nosplit
func userPageSize(va uintptr) uintptr {
	pg := va &^ (boot.PageSize - 1)
	slot := &userPages[(pg/boot.PageSize)%uintptr(len(userPages))]
	if *slot == pg {
		return boot.PageSize
	}
	size, ok := pageSpan(pg)
	if !ok {
		if !lazyFaultFn(pg) {
			return 0
		}
		if size, ok = pageSpan(pg); !ok {
			return 0
		}
	}
	*slot = pg
	return size
}

// userPrefix returns how many bytes from addr, up to n, the kernel may
// touch on the program's behalf: 0 when addr itself is bad.
//
//go:nosplit
func userPrefix(addr, n uintptr) uintptr {
	if n == 0 || addr < boot.NullGuard || addr >= userLimit {
		return 0
	}
	end := addr + n
	if end < addr || end > userLimit {
		end = userLimit
	}
	if hostedTest {
		return end - addr
	}
	end = kernelOnlyCut(addr, end)
	p := addr
	for p < end {
		size := userPageSize(p)
		if size == 0 {
			break
		}
		p = p&^(size-1) + size
	}
	if p > end {
		p = end
	}
	return p - addr
}

// userOK reports whether all of [addr, addr+n) is the program's.
//
//go:nosplit
func userOK(addr, n uintptr) bool { return userPrefix(addr, n) == n }

// copyIn copies n bytes from the program's src to the kernel's dst; false
// means EFAULT.
//
//go:nosplit
func copyIn(dst unsafe.Pointer, src, n uintptr) bool {
	return userPrefix(src, n) == n && ucopy(dst, ptr(src), n) == 0
}

// copyOut copies n bytes from the kernel's src to the program's dst; false
// means EFAULT.
//
//go:nosplit
func copyOut(dst uintptr, src unsafe.Pointer, n uintptr) bool {
	return userPrefix(dst, n) == n && ucopy(ptr(dst), src, n) == 0
}

// copyOutSome copies as much of n bytes to the program's dst as it can,
// stopping where dst stops being the program's: the count copied.
//
//go:nosplit
func copyOutSome(dst uintptr, src unsafe.Pointer, n uintptr) uintptr {
	k := userPrefix(dst, n)
	return k - ucopy(ptr(dst), src, k)
}

// copyInSome is copyOutSome the other way.
//
//go:nosplit
func copyInSome(dst unsafe.Pointer, src, n uintptr) uintptr {
	k := userPrefix(src, n)
	return k - ucopy(dst, ptr(src), k)
}

// clearUserSome zeroes as much of n bytes at the program's dst as it can.
//
//go:nosplit
func clearUserSome(dst, n uintptr) uintptr {
	k := userPrefix(dst, n)
	return k - uclear(ptr(dst), nil, k)
}

// userCount is a transfer's result: the count done, or EFAULT when none of
// a non-empty transfer could be done because the program's buffer is bad.
//
//go:nosplit
func userCount(done, n uintptr) int64 {
	if done == 0 && n > 0 {
		return -eFAULT
	}
	return int64(done)
}

// strFromUser copies the NUL-terminated string at the program's src into
// the kernel buffer at dst (max+1 bytes): its length, -ENAMETOOLONG if no
// NUL comes within max+1 bytes, or -EFAULT if the string runs into memory
// that is not the program's first (Linux's strncpy_from_user).
//
//go:nosplit
func strFromUser(dst, src, max uintptr) int64 {
	n := uintptr(0)
	for n <= max {
		k := boot.PageSize - (src+n)&(boot.PageSize-1)
		if k > 64 {
			k = 64
		}
		if k > max+1-n {
			k = max + 1 - n
		}
		if userPrefix(src+n, k) != k || ucopy(ptr(dst+n), ptr(src+n), k) != 0 {
			return -eFAULT
		}
		for i := n; i < n+k; i++ {
			if *(*byte)(ptr(dst + i)) == 0 {
				return int64(i)
			}
		}
		n += k
	}
	return -eNAMETOOLONG
}

// fsBaseOK checks a thread pointer (arch_prctl ARCH_SET_FS, clone's
// CLONE_SETTLS): 0, -EPERM for one outside user space (Linux's answer), or
// -EFAULT for one whose g slot is not the program's memory. The kernel's
// entry and every return from an assembly routine to Go code load g from
// -8(FS): with nothing mapped there the kernel would fault on itself, over
// and over, in the handler for that very fault.
//
//go:nosplit
func fsBaseOK(v uintptr) int64 {
	if v >= userLimit {
		return -ePERM
	}
	if !userOK(v-8, 8) {
		return -eFAULT
	}
	return 0
}

// probeBuf is the kernel side of the probe's copies.
var probeBuf [boot.PageSize]byte

// sysAmberUaccessProbe is Amber's own system call amber_uaccess_probe
// (addr, n, op): it reaches the exception table on purpose, which no
// checked system call does, so tests can see it work. Ops 0-2 read n
// bytes (at most a page) at addr, write them, or zero them through the
// user-copy routines without the checks: the count done, EFAULT when
// none. Op 3 reads a byte at addr outside them, as a kernel bug would:
// a fault there must stop the VM with a crash report.
//
//go:nosplit
func sysAmberUaccessProbe(f *sysFrame) int64 {
	addr, n := uintptr(f.rdi), uintptr(f.rsi)
	if n > uintptr(len(probeBuf)) {
		return -eINVAL
	}
	var left uintptr
	switch f.rdx {
	case 0:
		left = ucopy(unsafe.Pointer(&probeBuf[0]), ptr(addr), n)
	case 1:
		left = ucopy(ptr(addr), unsafe.Pointer(&probeBuf[0]), n)
	case 2:
		left = uclear(ptr(addr), nil, n)
	case 3:
		return int64(*(*byte)(ptr(addr)))
	default:
		return -eINVAL
	}
	return userCount(n-left, n)
}
