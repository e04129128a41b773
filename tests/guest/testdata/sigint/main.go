// Command sigint waits for SIGINT with os/signal while a goroutine spins,
// and reports it; Ctrl-C on `vmm run` must reach it.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"time"
)

var sink atomic.Uint64

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt)
	go func() {
		x := uint64(0)
		for {
			x++
			if x%(1<<30) == 0 {
				sink.Store(x)
			}
		}
	}()
	fmt.Println("waiting for SIGINT")
	select {
	case s := <-c:
		fmt.Println("got", s)
	case <-time.After(30 * time.Second):
		fmt.Println("no signal")
		os.Exit(1)
	}
}
