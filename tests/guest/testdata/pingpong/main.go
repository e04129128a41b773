// Command pingpong measures a goroutine switch: two goroutines pass a
// token over unbuffered channels; it prints nanoseconds per round trip
// (median of several batches).
package main

import (
	"fmt"
	"slices"
	"time"
)

func main() {
	const n = 200_000
	a, b := make(chan int), make(chan int)
	go func() {
		for v := range a {
			b <- v + 1
		}
	}()
	var per []float64
	for batch := 0; batch < 7; batch++ {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			a <- i
			<-b
		}
		per = append(per, float64(time.Since(t0).Nanoseconds())/n)
	}
	slices.Sort(per)
	fmt.Printf("roundtrip_ns=%.1f\n", per[len(per)/2])
}
