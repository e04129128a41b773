package main

import (
	"os/signal"
	"reflect"
	"syscall"
	"unsafe"

	"github.com/amberos/amber/kernel/service"
)

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn  = 0x1
	pollOut = 0x4
)

func poll(fds []pollFd) int {
	n, _, _ := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), 0)
	return int(n)
}

// queueFD digs the queue's descriptor out for the raw-call check.
func queueFD(q *service.Queue) int {
	return int(reflect.ValueOf(q).Elem().FieldByName("fd").Uint())
}

// signalIgnored makes a write to a dropped object fail with EPIPE rather
// than kill the program, as it would for a socket (Go's runtime ignores
// SIGPIPE only on descriptors 1 and 2).
func signalIgnored() { signal.Ignore(syscall.SIGPIPE) }
