// Command badptr passes the kernel an address it never mapped: the system
// call fails with EFAULT and the program goes on, as on Linux. With the
// argument "kernelbug" it makes the kernel itself read that address
// outside its user-copy routines (Amber's amber_uaccess_probe, op 3), which
// must stop the VM with a crash report.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "kernelbug" {
		println("reading a bad address in the kernel")
		syscall.Syscall(502, 0xdead0000, 1, 3)
		println("not reached")
		return
	}
	_, _, e := syscall.Syscall(syscall.SYS_WRITE, 1, 0xdead0000, 16)
	fmt.Printf("write from 0xdead0000: %v\n", e)
	fmt.Println("still running")
}
