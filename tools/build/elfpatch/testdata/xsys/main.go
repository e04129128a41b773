// Command xsys uses golang.org/x/sys/unix, whose assembly has SYSCALL
// instructions of its own that no GOROOT overlay can rewrite.
package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func main() {
	fmt.Println(unix.Getpid() > 0)
}
