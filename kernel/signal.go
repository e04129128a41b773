package kernel

import (
	"sync/atomic"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Signals. A fault the runtime has a handler for (a nil dereference, an
// integer division by zero) is delivered to that handler with a Linux
// signal frame — siginfo, ucontext and the vector state — on the thread's
// alternate stack, so it becomes a Go panic; rt_sigreturn resumes the
// context the handler left in the frame. Signals sent with kill/tgkill are
// queued on the thread and delivered when it returns from its system call
// (a blocked call returns EINTR first).

const (
	nsig       = 65
	sigDfl     = 0
	sigIgn     = 1
	sigILL     = 4
	sigTRAP    = 5
	sigBUS     = 7
	sigFPE     = 8
	sigKill    = 9
	sigSEGV    = 11
	sigChld    = 17
	sigCont    = 18
	sigStop    = 19
	sigURG     = 23
	sigWinch   = 28
	ssOnstack  = 1
	ssDisable  = 2
	saOnstack  = 0x08000000
	saRestorer = 0x04000000
	saNodefer  = 0x40000000
	saResethnd = 0x80000000

	// si_code values.
	siKernel    = 0x80
	segvMaperr  = 1
	segvAccerr  = 2
	fpeIntdiv   = 1
	illIllopn   = 2
	busAdrerr   = 2
	trapBrkpt   = 1
	siTkill     = -6
	siUser      = 0
	unblockable = 1<<(sigKill-1) | 1<<(sigStop-1)
)

type sigaction struct {
	handler  uint64
	flags    uint64
	restorer uint64
	mask     uint64
}

var sigactions [nsig]sigaction

// sigWork is non-zero while there is work for the return to user code
// (bits work*, apic.go): the system-call exit path checks it. Interrupts
// set bits with single read-modify-write instructions, so updates are
// atomic with respect to them.
var sigWork uint32

// xsaveSize is the size of an XSAVE image for the enabled state
// components (CPUID leaf 0xD); initFPU is the state a context without one
// starts from.
var (
	xsaveSize uintptr
	initFPU   [xsaveRoom + 64]byte
)

//go:nosplit
func fpuInit() {
	_, b, _, _ := cpuid(0xd, 0)
	xsaveSize = uintptr(b)
	if xsaveSize < 576 || xsaveSize > xsaveRoom {
		kfatal("boot: unexpected XSAVE area size")
	}
	xsave(initFPUArea())
}

//go:nosplit
func initFPUArea() uintptr {
	return (uintptr(unsafe.Pointer(&initFPU[0])) + 63) &^ 63
}

// The Linux signal frame (arch/x86/include/uapi/asm/sigcontext.h,
// ucontext.h, siginfo.h), as the Go runtime reads it.
type sigcontext struct {
	r8, r9, r10, r11, r12, r13, r14, r15 uint64
	rdi, rsi, rbp, rbx, rdx, rax, rcx    uint64
	rsp, rip, eflags                     uint64
	csgsfs                               uint64
	err, trapno, oldmask, cr2            uint64
	fpstate                              uint64
	_                                    [8]uint64
}

type ucontext struct {
	flags    uint64
	link     uint64
	stack    stackT
	mcontext sigcontext
	sigmask  uint64
}

type siginfo struct {
	signo, errno, code, _ int32
	addr                  uint64
	_                     [14]uint64
}

type rtSigframe struct {
	pretcode uint64
	uc       ucontext
	info     siginfo
}

// userMapped reports whether [addr, addr+n) is the program's mapped
// memory (uaccess.go), so an exception handler can read or write it —
// a signal frame — without faulting itself: a fault there would be
// delivered on the stack the handler runs on.
//
//go:nosplit
func userMapped(addr, n uintptr) bool {
	return n != 0 && userOK(addr, n)
}

// pushSignalFrame writes a signal frame for sig on the right stack of t,
// saving the context in mc (whose rsp is the interrupted stack pointer)
// and the vector state from the XSAVE image at fp. It returns the new
// stack pointer, the addresses of siginfo and ucontext, or ok=false if no
// frame can be written (no handler stack mapped).
//
//go:nosplit
func pushSignalFrame(t *thread, sig int, code int32, addr uint64, mc *sigcontext, fp uintptr) (sp, info, uc uintptr, ok bool) {
	act := &sigactions[sig]
	top := uintptr(mc.rsp) - 128 // the red zone
	onAlt := t.altSP <= uintptr(mc.rsp) && uintptr(mc.rsp) < t.altSP+t.altSize
	if act.flags&saOnstack != 0 && t.altFlags&ssDisable == 0 && t.altSize != 0 && !onAlt {
		top = t.altSP + t.altSize
	}
	fpArea := (top - xsaveSize) &^ 63
	frame := (fpArea-unsafe.Sizeof(rtSigframe{}))&^15 - 8
	if !userMapped(frame, top-frame) {
		return 0, 0, 0, false
	}
	copy(userBytes(fpArea, xsaveSize), userBytes(fp, xsaveSize))
	f := (*rtSigframe)(ptr(frame))
	clear(userBytes(frame, unsafe.Sizeof(rtSigframe{})))
	f.pretcode = act.restorer
	f.uc.stack = stackT{sp: uint64(t.altSP), size: uint64(t.altSize), flags: t.altFlags}
	if onAlt {
		f.uc.stack.flags |= ssOnstack
	}
	f.uc.mcontext = *mc
	f.uc.mcontext.fpstate = uint64(fpArea)
	f.uc.mcontext.oldmask = t.sigmask
	f.uc.sigmask = t.sigmask
	f.info.signo, f.info.code, f.info.addr = int32(sig), code, addr
	t.sigmask |= act.mask
	if act.flags&saNodefer == 0 {
		t.sigmask |= 1 << (sig - 1)
	}
	t.sigmask &^= unblockable
	if act.flags&saResethnd != 0 {
		act.handler = sigDfl
	}
	return frame, uintptr(unsafe.Pointer(&f.info)), uintptr(unsafe.Pointer(&f.uc)), true
}

// faultSignal maps an exception to the signal Linux sends for it.
//
//go:nosplit
func faultSignal(tf *boot.TrapFrame, cr2 uint64) (sig int, code int32, addr uint64) {
	switch tf.Vector {
	case 0, 16, 19: // #DE, #MF, #XM
		return sigFPE, fpeIntdiv, tf.RIP
	case 3: // #BP
		return sigTRAP, trapBrkpt, tf.RIP
	case 6: // #UD
		return sigILL, illIllopn, tf.RIP
	case 17, 12: // #AC, #SS
		return sigBUS, busAdrerr, 0
	case 14: // #PF
		if fileMapBeyondEOF(uintptr(cr2)) {
			return sigBUS, busAdrerr, cr2
		}
		code := int32(segvMaperr)
		if tf.ErrorCode&1 != 0 {
			code = segvAccerr
		}
		return sigSEGV, code, cr2
	case 13, 4, 5: // #GP, #OF, #BR
		return sigSEGV, siKernel, 0
	}
	return 0, 0, 0
}

// deliverFault turns an exception into a signal for the running thread,
// rewriting tf so that IRETQ enters the handler. It returns false when the
// program has no handler for it or blocks it (Linux then kills the
// process).
//
//go:nosplit
func deliverFault(tf *boot.TrapFrame, fp uintptr, cr2 uint64) (sig int, ok bool) {
	sig, code, addr := faultSignal(tf, cr2)
	if sig == 0 {
		return 0, false
	}
	t := cur()
	h := sigactions[sig].handler
	if h == sigDfl || h == sigIgn || t.sigmask&(1<<(sig-1)) != 0 {
		return sig, false
	}
	// Field by field: a composite literal would be built on the stack.
	mc := &mcScratch
	mc.r8, mc.r9, mc.r10, mc.r11, mc.r12, mc.r13, mc.r14, mc.r15 = tf.R8, tf.R9, tf.R10, tf.R11, tf.R12, tf.R13, tf.R14, tf.R15
	mc.rdi, mc.rsi, mc.rbp, mc.rbx, mc.rdx, mc.rax, mc.rcx = tf.RDI, tf.RSI, tf.RBP, tf.RBX, tf.RDX, tf.RAX, tf.RCX
	mc.rsp, mc.rip, mc.eflags, mc.csgsfs = tf.RSP, tf.RIP, tf.RFLAGS, tf.CS|tf.SS<<48
	mc.err, mc.trapno, mc.oldmask, mc.cr2 = tf.ErrorCode, tf.Vector, 0, cr2
	sp, info, uc, ok := pushSignalFrame(t, sig, code, addr, mc, fp)
	if !ok {
		return sig, false
	}
	tf.RIP, tf.RSP = h, uint64(sp)
	tf.RDI, tf.RSI, tf.RDX, tf.RAX = uint64(sig), uint64(info), uint64(uc), 0
	tf.RFLAGS &^= 0x400 | 0x100 // DF, TF
	return sig, true
}

// sysRtSigreturn restores the context saved by pushSignalFrame (and
// possibly edited by the handler). The restorer's return consumed
// pretcode, so the frame starts 8 bytes below the caller's stack pointer.
//
//go:nosplit
func sysRtSigreturn(f *sysFrame) int64 {
	frame := uintptr(f.rsp) - 8
	if !userMapped(frame, unsafe.Sizeof(rtSigframe{})) {
		kfatal("rt_sigreturn: no signal frame at the stack pointer")
	}
	sf := (*rtSigframe)(ptr(frame))
	mc := &sf.uc.mcontext
	t := cur()
	t.sigmask = sf.uc.sigmask &^ unblockable
	f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15 = mc.r8, mc.r9, mc.r10, mc.r11, mc.r12, mc.r13, mc.r14, mc.r15
	f.rdi, f.rsi, f.rbp, f.rbx, f.rdx, f.rcx = mc.rdi, mc.rsi, mc.rbp, mc.rbx, mc.rdx, mc.rcx
	f.rsp, f.rip, f.rflags = mc.rsp, mc.rip, mc.eflags|0x3200
	fp := uintptr(mc.fpstate)
	if fp == 0 || fp&63 != 0 || !userMapped(fp, xsaveSize) {
		fp = initFPUArea()
	}
	f.xrstor = uint64(fp)
	updateSigWork()
	return int64(mc.rax)
}

// syscallExitWork runs before a return to user code while sigWork is
// set: it honours a reschedule a timer tick asked for, takes the signals
// the VMM posted, and delivers the lowest pending signal the thread does
// not block. f is a system-call frame, or the complete context of a
// preempted thread (f.xrstor != 0).
//
//go:nosplit
func syscallExitWork(f *sysFrame) {
	if sigWork&workResched != 0 {
		atomic.AndUint32(&sigWork, ^uint32(workResched))
		if nextRunnable(cpu0.cur) >= 0 {
			schedule() // the caller stays runnable: round robin
		}
	}
	if sigWork&workHostSigs != 0 {
		takeHostSignals()
	}
	t := cur()
	ready := t.pending &^ t.sigmask
	if ready == 0 {
		updateSigWork()
		return
	}
	sig := 1
	for ready&1 == 0 {
		ready >>= 1
		sig++
	}
	t.pending &^= 1 << (sig - 1)
	h := sigactions[sig].handler
	if h == sigIgn || h == sigDfl && !defaultTerminates(uint64(sig)) {
		updateSigWork()
		return
	}
	if h == sigDfl {
		exitVM(128 + sig)
	}
	fp := uintptr(f.xrstor)
	eflags := f.rflags
	if fp == 0 {
		// The vector state at a system-call return belongs to nobody
		// (calls clobber it), but the frame carries one.
		fp = (uintptr(unsafe.Pointer(&fpScratch[0])) + 63) &^ 63
		xsave(fp)
		eflags = 0x3202
	}
	mc := &mcScratch
	mc.r8, mc.r9, mc.r10, mc.r11, mc.r12, mc.r13, mc.r14, mc.r15 = f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15
	mc.rdi, mc.rsi, mc.rbp, mc.rbx, mc.rdx, mc.rax, mc.rcx = f.rdi, f.rsi, f.rbp, f.rbx, f.rdx, f.rax, f.rcx
	mc.rsp, mc.rip, mc.eflags, mc.csgsfs = f.rsp, f.rip, eflags, boot.SelUserCode|boot.SelUserData<<48
	mc.err, mc.trapno, mc.oldmask, mc.cr2 = 0, 0, 0, 0
	sp, info, uc, ok := pushSignalFrame(t, sig, siTkill, 0, mc, fp)
	if !ok {
		kfatal("cannot write a signal frame: the signal stack is not mapped")
	}
	f.rip, f.rsp = h, uint64(sp)
	f.rdi, f.rsi, f.rdx, f.rax = uint64(sig), uint64(info), uint64(uc), 0
	f.rflags = eflags &^ (0x400 | 0x100)
	updateSigWork()
}

// mcScratch holds the context being saved into a signal frame: too big
// for the nosplit stack budget, and used by one delivery at a time.
var mcScratch sigcontext

// fpScratch holds the XSAVE image syscallExitWork takes until
// pushSignalFrame copies it into the frame (one vCPU: one at a time).
var fpScratch [xsaveRoom + 64]byte

//go:nosplit
func updateSigWork() {
	for i := range threads {
		t := &threads[i]
		if (t.state == tRunnable || t.state == tBlocked) && t.pending&^t.sigmask != 0 {
			atomic.OrUint32(&sigWork, workSignal)
			return
		}
	}
	atomic.AndUint32(&sigWork, ^uint32(workSignal))
}

// defaultTerminates reports whether sig's default action ends the process.
//
//go:nosplit
func defaultTerminates(sig uint64) bool {
	switch sig {
	case sigChld, sigCont, sigURG, sigWinch, sigStop, 20, 21, 22:
		return false
	}
	return true
}

// sendSignal queues sig for thread i, interrupting a blocking call.
//
//go:nosplit
func sendSignal(i int, sig uint64) int64 {
	if sig == 0 {
		return 0
	}
	if sig >= nsig {
		return -eINVAL
	}
	h := sigactions[sig].handler
	if sig == sigKill || h == sigDfl && defaultTerminates(sig) && threads[i].sigmask&(1<<(sig-1)) == 0 {
		exitVM(128 + int(sig))
	}
	if h == sigIgn || h == sigDfl {
		return 0
	}
	t := &threads[i]
	t.pending |= 1 << (sig - 1)
	if t.sigmask&(1<<(sig-1)) == 0 {
		atomic.OrUint32(&sigWork, workSignal)
		if t.state == tBlocked {
			wake(i, wokeSignal)
		}
	}
	return 0
}

//go:nosplit
func threadIndex(tid int64) int {
	for i := range threads {
		if threads[i].tid == tid && (threads[i].state == tRunnable || threads[i].state == tBlocked) {
			return i
		}
	}
	return -1
}

//go:nosplit
func sysKill(f *sysFrame) int64 {
	if int64(f.rdi) != 1 && int64(f.rdi) != 0 && int64(f.rdi) != -1 {
		return -eSRCH
	}
	return processSignal(f.rsi)
}

// processSignal sends a process-directed signal to a thread that does not
// block it, the running thread first.
//
//go:nosplit
func processSignal(sig uint64) int64 {
	target := cpu0.cur
	if sig > 0 && sig < nsig && threads[target].sigmask&(1<<(sig-1)) != 0 {
		for i := range threads {
			t := &threads[i]
			if (t.state == tRunnable || t.state == tBlocked) && t.sigmask&(1<<(sig-1)) == 0 {
				target = i
				break
			}
		}
	}
	return sendSignal(target, sig)
}

//go:nosplit
func sysTgkill(f *sysFrame) int64 {
	i := threadIndex(int64(f.rsi))
	if f.rdi != 1 || i < 0 {
		return -eSRCH
	}
	return sendSignal(i, f.rdx)
}

//go:nosplit
func sysTkill(f *sysFrame) int64 {
	i := threadIndex(int64(f.rdi))
	if i < 0 {
		return -eSRCH
	}
	return sendSignal(i, f.rsi)
}

// rt_sigaction, rt_sigprocmask and sigaltstack read the new setting
// first (EFAULT before any change) and write the old one last, as Linux
// does; the old setting is the one before the call.
//
//go:nosplit
func sysRtSigaction(f *sysFrame) int64 {
	sig, act, old := f.rdi, uintptr(f.rsi), uintptr(f.rdx)
	if sig == 0 || sig >= nsig {
		return -eINVAL
	}
	var a sigaction
	if act != 0 {
		if !copyIn(unsafe.Pointer(&a), act, unsafe.Sizeof(a)) {
			return -eFAULT
		}
		if sig == sigKill || sig == sigStop {
			return -eINVAL
		}
	}
	prev := sigactions[sig]
	if act != 0 {
		sigactions[sig] = a
	}
	if old != 0 && !copyOut(old, unsafe.Pointer(&prev), unsafe.Sizeof(prev)) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func sysRtSigprocmask(f *sysFrame) int64 {
	how, set, old := f.rdi, uintptr(f.rsi), uintptr(f.rdx)
	t := cur()
	prev := t.sigmask
	if set != 0 {
		var s uint64
		if !copyIn(unsafe.Pointer(&s), set, 8) {
			return -eFAULT
		}
		switch how {
		case 0: // SIG_BLOCK
			t.sigmask |= s
		case 1: // SIG_UNBLOCK
			t.sigmask &^= s
		case 2: // SIG_SETMASK
			t.sigmask = s
		default:
			return -eINVAL
		}
		t.sigmask &^= unblockable
		updateSigWork()
	}
	if old != 0 && !copyOut(old, unsafe.Pointer(&prev), 8) {
		return -eFAULT
	}
	return 0
}

type stackT struct {
	sp    uint64
	flags int32
	_     int32
	size  uint64
}

//go:nosplit
func sysSigaltstack(f *sysFrame) int64 {
	ss, old := uintptr(f.rdi), uintptr(f.rsi)
	t := cur()
	var n stackT
	if ss != 0 && !copyIn(unsafe.Pointer(&n), ss, unsafe.Sizeof(n)) {
		return -eFAULT
	}
	var o stackT
	o.sp, o.flags, o.size = uint64(t.altSP), t.altFlags, uint64(t.altSize)
	if ss != 0 {
		t.altSP, t.altFlags, t.altSize = uintptr(n.sp), n.flags, uintptr(n.size)
	}
	if old != 0 && !copyOut(old, unsafe.Pointer(&o), unsafe.Sizeof(o)) {
		return -eFAULT
	}
	return 0
}
