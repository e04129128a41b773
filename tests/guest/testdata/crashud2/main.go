// Command crashud2 blocks SIGILL and then executes an undefined
// instruction three calls deep: Linux kills such a process, and Amber's
// VMM reports the crash with a backtrace.
package main

import (
	"syscall"
	"unsafe"
)

func ud2()

//go:noinline
func inner() { ud2() }

//go:noinline
func middle() { inner() }

func main() {
	println("about to crash")
	mask := uint64(1) << (syscall.SIGILL - 1)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&mask)), 0, 8, 0, 0)
	middle()
}
