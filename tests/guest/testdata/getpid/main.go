// Command getpid times syscall.RawSyscall(SYS_GETPID) in the guest and
// prints nanoseconds per call (median of several batches). It times
// getuid the same way, interleaved: a call as trivial whose answer is not
// taken on the kernel's leaf path, so it goes through the full entry (the
// register frame on the kernel stack): the two figures of one run say
// what the leaf path saves.
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
	var pid, uid []float64
	for b := 0; b < 11; b++ {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
		}
		pid = append(pid, float64(time.Since(t0).Nanoseconds())/float64(n))
		t0 = time.Now()
		for i := 0; i < n; i++ {
			syscall.RawSyscall(syscall.SYS_GETUID, 0, 0, 0)
		}
		uid = append(uid, float64(time.Since(t0).Nanoseconds())/float64(n))
	}
	slices.Sort(pid)
	slices.Sort(uid)
	fmt.Printf("getpid_ns=%.2f getuid_ns=%.2f\n", pid[len(pid)/2], uid[len(uid)/2])
}
