// Command goroutines starts 100 goroutines that pass tokens around a ring
// of channels and sleep, and prints a sum that is only right if every
// message arrived.
package main

import (
	"fmt"
	"sync"
	"time"
)

func main() {
	const n = 100
	const rounds = 20
	chans := make([]chan int, n)
	for i := range chans {
		chans[i] = make(chan int)
	}
	var wg sync.WaitGroup
	results := make(chan int, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sum := 0
			for r := 0; r < rounds; r++ {
				if i == 0 {
					chans[1] <- r
					v := <-chans[0]
					sum += v
				} else {
					v := <-chans[i]
					if r%5 == 0 {
						time.Sleep(time.Millisecond)
					}
					chans[(i+1)%n] <- v + 1
					sum += v
				}
			}
			results <- sum
		}(i)
	}
	wg.Wait()
	close(results)
	total := 0
	for s := range results {
		total += s
	}
	time.Sleep(20 * time.Millisecond)
	fmt.Printf("total=%d elapsed_ok=%v\n", total, time.Since(start) >= 20*time.Millisecond)
}
