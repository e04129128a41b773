// Command faults turns hardware faults into recovered Go panics: a nil
// dereference (SIGSEGV), an integer division by zero (SIGFPE), and checks
// that registers and vector state survive signal delivery and return.
package main

import (
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type T struct{ x [64]int }

//go:noinline
func nilDeref(p *T) int { return p.x[3] }

//go:noinline
func divide(a, b int) int { return a / b }

func try(name string, f func()) {
	defer func() {
		r := recover()
		fmt.Printf("%s: recovered: %v\n", name, r)
	}()
	f()
}

func main() {
	f := 1.5
	try("nil", func() { nilDeref(nil) })
	try("div", func() { divide(7, 0) })
	for i := 0; i < 100; i++ {
		try("loop", func() { nilDeref(nil) })
	}
	// Floating point state is intact after 102 signal round trips.
	fmt.Printf("float: %.4f\n", math.Sqrt(f*f))

	// A handled signal sent with kill reaches os/signal.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	syscall.Kill(syscall.Getpid(), syscall.SIGUSR1)
	select {
	case s := <-c:
		fmt.Println("got signal:", s)
	case <-time.After(5 * time.Second):
		fmt.Println("signal lost")
	}
}
