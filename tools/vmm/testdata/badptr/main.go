// Command badptr passes the kernel an address it never mapped.
package main

import "syscall"

func main() {
	println("writing from a bad address")
	syscall.Syscall(syscall.SYS_WRITE, 1, 0xdead0000, 16)
	println("not reached")
}
