// Command chanstress is a goroutine- and channel-heavy guest for the stress
// runs: producers and consumers over buffered and unbuffered channels,
// select with timeouts, a contended mutex and a pipeline, with every
// message accounted for. It prints "chanstress ok" or exits non-zero.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

func fail(format string, args ...any) {
	fmt.Printf("FAIL chanstress: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	n := 2000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}

	// Fan-in, fan-out: 16 producers, 16 consumers, one unbuffered and one
	// buffered channel, consumers choosing with select.
	unbuf, buf := make(chan int), make(chan int, 32)
	var prod, cons sync.WaitGroup
	sums := make([]int, 16)
	for p := 0; p < 16; p++ {
		prod.Add(1)
		go func(p int) {
			defer prod.Done()
			for i := 0; i < n; i++ {
				v := p*n + i
				if i%2 == 0 {
					unbuf <- v
				} else {
					buf <- v
				}
			}
		}(p)
	}
	done := make(chan struct{})
	for c := 0; c < 16; c++ {
		cons.Add(1)
		go func(c int) {
			defer cons.Done()
			for {
				select {
				case v := <-unbuf:
					sums[c] += v
				case v := <-buf:
					sums[c] += v
				case <-done:
					// Drain what is left in the buffer.
					for {
						select {
						case v := <-buf:
							sums[c] += v
						default:
							return
						}
					}
				}
			}
		}(c)
	}
	prod.Wait()
	close(done)
	cons.Wait()
	total, m := 0, 16*n
	for _, s := range sums {
		total += s
	}
	if want := m * (m - 1) / 2; total != want {
		fail("fan-in sum %d, want %d", total, want)
	}

	// A contended mutex.
	var mu sync.Mutex
	counter := 0
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if counter != 32*(n/4) {
		fail("mutex counter %d, want %d", counter, 32*(n/4))
	}

	// A pipeline of 50 stages, and selects that time out.
	in := make(chan int)
	var out <-chan int = in
	for s := 0; s < 50; s++ {
		next := make(chan int)
		go func(src <-chan int, dst chan<- int) {
			for v := range src {
				dst <- v + 1
			}
			close(dst)
		}(out, next)
		out = next
	}
	go func() {
		for i := 0; i < n; i++ {
			in <- i
		}
		close(in)
	}()
	got := 0
	for v := range out {
		got += v
	}
	if want := n*(n-1)/2 + 50*n; got != want {
		fail("pipeline sum %d, want %d", got, want)
	}
	timeouts := 0
	never := make(chan int)
	for i := 0; i < 20; i++ {
		select {
		case <-never:
		case <-time.After(200 * time.Microsecond):
			timeouts++
		}
	}
	if timeouts != 20 {
		fail("%d of 20 selects timed out", timeouts)
	}
	fmt.Printf("chanstress ok: %d messages\n", 16*n)
}
