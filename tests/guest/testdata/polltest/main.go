// Command polltest checks poll(2) on a pipe: not readable, then readable
// after a write, and a timeout.
package main

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

func poll(fds []pollFd, ms int) int {
	n, _, e := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(ms))
	if e != 0 {
		panic(e)
	}
	return int(n)
}

func main() {
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		panic(err)
	}
	fds := []pollFd{{fd: int32(p[0]), events: 1}}
	t0 := time.Now()
	n := poll(fds, 20)
	fmt.Printf("empty: n=%d waited=%v\n", n, time.Since(t0) >= 20*time.Millisecond)
	syscall.Write(p[1], []byte("x"))
	n = poll(fds, -1)
	fmt.Printf("written: n=%d revents=%d\n", n, fds[0].revents)
}
