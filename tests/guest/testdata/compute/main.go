// Command compute times a pure compute loop (no system calls, no
// allocation), to measure what timer ticks cost it.
package main

import (
	"fmt"
	"slices"
	"time"
)

var sink uint64

//go:noinline
func work(n int) uint64 {
	x := uint64(1)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

func main() {
	var per []float64
	for batch := 0; batch < 9; batch++ {
		t0 := time.Now()
		sink += work(100_000_000)
		per = append(per, float64(time.Since(t0).Microseconds())/1000)
	}
	slices.Sort(per)
	fmt.Printf("compute_ms=%.2f\n", per[len(per)/2])
}
