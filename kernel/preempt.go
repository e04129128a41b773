package kernel

import "github.com/amberos/amber/boot"

// Preemption: the timer tick (apic.go) takes the vCPU from a thread that
// has used its slice and continues the next runnable one, round robin.

// nextRunnable returns the runnable thread after me in round-robin order,
// or -1 if there is none but me.
//
//go:nosplit
func nextRunnable(me int) int {
	for k := 1; k < maxThreads; k++ {
		i := (me + k) % maxThreads
		if threads[i].state == tRunnable {
			return i
		}
	}
	return -1
}

// preemptTo saves the interrupted user context of the running thread as a
// complete system-call frame on its kernel stack (registers, RFLAGS and the
// XSAVE image), so that it continues through forkRet like a thread
// returning from a call, and continues thread next (which may be the same
// thread, to deliver a signal on the way). It does not return: the
// exception stack is abandoned.
//
//go:nosplit
func preemptTo(tf *boot.TrapFrame, fp uintptr, next int) {
	me := cpu0.cur
	top := kstackTop(me)
	f := (*sysFrame)(ptr(top - frameSize))
	f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp = tf.RAX, tf.RBX, tf.RCX, tf.RDX, tf.RSI, tf.RDI, tf.RBP
	f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15 = tf.R8, tf.R9, tf.R10, tf.R11, tf.R12, tf.R13, tf.R14, tf.R15
	f.rip, f.rsp, f.rflags = tf.RIP, tf.RSP, tf.RFLAGS
	area := (top - frameSize - xsaveSize) &^ 63
	copy(userBytes(area, xsaveSize), userBytes(fp, xsaveSize))
	f.xrstor = uint64(area)
	sp := area - 16
	*u64at(sp) = 0
	*u64at(sp + 8) = uint64(forkRetPC())
	threads[me].ksp = sp
	t := &threads[next]
	cpu0.cur = next
	cpu0.kstackTop = kstackTop(next)
	sliceStart = nanotime()
	wrfsbase(t.fsbase)
	cpu0.inTick = 0 // this tick's handler ends here, not at trapCommon's IRETQ
	lapicWrite(lapicEOI, 0)
	jumpTo(t.ksp)
}
