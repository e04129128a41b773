// Command forkexec starts a program with os/exec and prints how it fails:
// the guest has one process, so clone without CLONE_THREAD is refused
// at once (ENOSYS) instead of hanging or crashing.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	start := time.Now()
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	err = exec.Command(exe, "-child").Run()
	fmt.Println("exec:", err)
	fmt.Println("ENOSYS:", errors.Is(err, syscall.ENOSYS))
	_, err = os.StartProcess(exe, []string{exe}, &os.ProcAttr{})
	fmt.Println("StartProcess ENOSYS:", errors.Is(err, syscall.ENOSYS))
	_, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	fmt.Println("fork:", e)
	_, _, e = syscall.RawSyscall(syscall.SYS_EXECVE, 0, 0, 0)
	fmt.Println("execve:", e)
	fmt.Println("quick:", time.Since(start) < time.Minute)
}
