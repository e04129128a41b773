// Command sigtimer is a signal- and timer-heavy guest for the stress runs:
// goroutines signal the process (SIGUSR1 through kill, SIGURG-driven async
// preemption of a call-free loop), hundreds of timers fire while that loop
// spins and the collector stops the world, and every count is checked.
// It prints "sigtimer ok" or exits non-zero saying what was wrong.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var spinSink atomic.Uint64

//go:noinline
func spin(stop *atomic.Bool) {
	// No calls in the loop body: only asynchronous preemption (SIGURG
	// delivered by the kernel) lets the collector stop this goroutine.
	x := uint64(1)
	for !stop.Load() {
		x = x*6364136223846793005 + 1442695040888963407
	}
	spinSink.Store(x)
}

func fail(format string, args ...any) {
	fmt.Printf("FAIL sigtimer: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	rounds := 200
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}

	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGUSR1)
	var received atomic.Int64
	gotSig := make(chan struct{}, 1)
	go func() {
		for range sigs {
			received.Add(1)
			select {
			case gotSig <- struct{}{}:
			default:
			}
		}
	}()

	var stop atomic.Bool
	spinDone := make(chan struct{})
	go func() { spin(&stop); close(spinDone) }()

	// Timers: many short ones at once, each counted once.
	var fired atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < rounds; r++ {
		wg.Add(1)
		d := time.Duration(r%7) * 100 * time.Microsecond
		time.AfterFunc(d, func() { fired.Add(1); wg.Done() })
		if r%10 == 0 {
			// A signal to ourselves; wait until the handler goroutine has
			// seen at least this one, so none is lost to coalescing.
			before := received.Load()
			if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
				fail("kill: %v", err)
			}
			deadline := time.After(10 * time.Second)
			for received.Load() == before {
				select {
				case <-gotSig:
				case <-deadline:
					fail("SIGUSR1 %d never arrived", r/10)
				}
			}
		}
		if r%25 == 0 {
			runtime.GC() // stops the world: needs the spinner preempted
		}
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		fail("only %d of %d timers fired", fired.Load(), rounds)
	}

	// Tickers and sleeps against the clock.
	tick := time.NewTicker(time.Millisecond)
	t0 := time.Now()
	for i := 0; i < 20; i++ {
		<-tick.C
	}
	tick.Stop()
	if el := time.Since(t0); el < 19*time.Millisecond {
		fail("20 ticks of 1ms took only %v", el)
	}
	t1 := time.Now()
	time.Sleep(3 * time.Millisecond)
	if el := time.Since(t1); el < 3*time.Millisecond {
		fail("Sleep(3ms) returned after %v", el)
	}

	stop.Store(true)
	<-spinDone
	signal.Stop(sigs)
	want := int64((rounds + 9) / 10)
	if got := received.Load(); got != want {
		fail("received %d SIGUSR1, want %d", got, want)
	}
	if got := fired.Load(); got != int64(rounds) {
		fail("%d timers fired, want %d", got, rounds)
	}
	fmt.Printf("sigtimer ok: %d timers, %d signals\n", rounds, want)
}
