package boot

// Hypercalls. The guest fills the per-CPU Hypercall block (anywhere in the
// identity-mapped first 4 GiB) and executes `OUTL EAX, DX` with DX =
// HypercallPort and EAX = the block's physical address. One port-I/O exit
// costs about 26 µs on the development hosts, so every call carries a whole
// request (a console buffer, not a byte).
const HypercallPort = 0x0510

// Hypercall numbers (Hypercall.Nr).
const (
	HCExit         = 1 // A0 = exit status; does not return
	HCConsoleWrite = 2 // A0 = fd (1 or 2), A1 = buffer PA, A2 = length; Ret = bytes written (short only on an error), or -errno of the host's write (EPIPE, ENOSPC, EDQUOT, EFBIG; EIO for anything else)
	HCConsoleRead  = 3 // A1 = buffer PA, A2 = capacity; Ret = bytes, 0 = none yet, -1 = end of input
	HCIdle         = 4 // A0 = deadline in guest ns since boot (0: none); returns on deadline, input or a host event
	HCFaultAddr    = 5 // Ret = CR2 of the last page fault
	HCCrash        = 6 // A0 = trap frame PA (TrapFrame) or 0, A1 = message PA, A2 = message length, A3 = exit status (0: ExitCrash); does not return
	HCMark         = 7 // A0 = mark id, A1 = guest TSC; the VMM records it (boot-time measurement)
)

// Idle results (Hypercall.Ret of HCIdle), a bit set.
const (
	IdleInput = 1 << iota // console input is available
	IdleInterrupt
)

// Hypercall is the request block.
type Hypercall struct {
	Nr  uint64
	A0  uint64
	A1  uint64
	A2  uint64
	A3  uint64
	Ret int64
}

// TrapFrame is the register save area the kernel's trap entry builds on
// the exception stack and passes to HCCrash: the general registers, the
// vector and error code, and what the CPU pushed. Field order is fixed by
// the assembly (trapCommon).
type TrapFrame struct {
	R15, R14, R13, R12, R11, R10, R9, R8 uint64
	RBP, RDI, RSI, RDX, RCX, RBX, RAX    uint64
	Vector, ErrorCode                    uint64
	RIP, CS, RFLAGS, RSP, SS             uint64
}

// Exit statuses the VMM reports for guest failures, distinct from any
// status a Go program exits with by itself (0-125).
const (
	ExitCrash = 125
)

// Memory hypercalls (kernel/unmap.go).
const (
	// HCFlushTLB: the guest changed or removed page-table entries; the VMM
	// makes the vCPU forget cached translations before it runs again.
	// A0, A1 = the range (informational: the flush is complete).
	HCFlushTLB = 8
	// HCRelease: A0 = PA of an array of ReleaseRun, A1 = its length (at
	// most MaxReleaseRuns). The guest no longer needs those pages' contents;
	// the VMM drops them (madvise MADV_DONTNEED), so they read as zeros.
	// Ret = 0, or -EINVAL (nothing done) when a run is not page-aligned or
	// leaves guest RAM.
	HCRelease = 9
)

// HCSnapshot: the guest asks for a whole-VM snapshot (guest.Snapshot).
// A0 = PA of the snapshot's name, A1 = its length. The VMM takes the
// snapshot with the vCPU stopped at this call, having first set Ret = 1,
// so that every VM restored from it sees 1; the VM that asked sees 0, or
// -EINVAL (a bad name), -EEXIST (the name is taken), -EOPNOTSUPP (the VM
// cannot be snapshotted: no writable store as its disk), -EIO (the
// snapshot failed; the VMM says why on its stderr).
const HCSnapshot = 10

// SysAmberSnapshot is Amber's system call behind guest.Snapshot: rdi, rsi
// = the name's address and length; it returns as HCSnapshot does, and
// -ENOSYS when the VMM serves no hypercalls. Linux has no system call of
// that number: natively it fails with ENOSYS too.
const SysAmberSnapshot = 505

// ReleaseRun is one physical range of an HCRelease request.
type ReleaseRun struct {
	PA, Len uint64
}

// MaxReleaseRuns bounds one HCRelease request.
const MaxReleaseRuns = 64
