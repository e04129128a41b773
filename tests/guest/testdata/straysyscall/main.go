// Command straysyscall makes system calls through golang.org/x/sys/unix,
// whose own assembly executes SYSCALL directly: the kernel must serve them
// through its trap path.
package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func main() {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		panic(err)
	}
	fmt.Printf("pid=%d sysname=%s\n", unix.Getpid(), unix.ByteSliceToString(u.Sysname[:]))
}
