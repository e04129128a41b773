// Command getpid times syscall.RawSyscall(SYS_GETPID) in the guest and
// prints nanoseconds per call (median of several batches).
package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	n := 1_000_000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	var per []float64
	for b := 0; b < 11; b++ {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
		}
		per = append(per, float64(time.Since(t0).Nanoseconds())/float64(n))
	}
	slices.Sort(per)
	fmt.Printf("getpid_ns=%.2f\n", per[len(per)/2])
}
