// Command leafcalls checks the kernel's leaf path for getpid and gettid
// (answered in the system-call entry without a register frame) against
// the full path, while threads preempt each other and signals are pending.
// Each OS thread compares every gettid with its tid from set_tid_address
// (whose answer comes from the full path; Amber ignores its pointer), so
// a leaf path that read another thread's slot, or was preempted between
// its loads and continued with a stale one, would show.
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
	"unsafe"
)

func main() {
	const threads = 6
	calls := 300_000
	if len(os.Args) > 1 {
		calls, _ = strconv.Atoi(os.Args[1])
	}
	var clearTID [threads]int32
	tids := make([]int64, threads)
	bad := make([]string, threads)
	var wg sync.WaitGroup
	var stop atomic.Bool
	// Signals to this process while the threads run: their delivery
	// makes sigWork non-zero, which sends leaf calls the full way.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGUSR1)
	var got atomic.Int64
	go func() {
		for range sigs {
			got.Add(1)
		}
	}()
	sent := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			syscall.Kill(syscall.Getpid(), syscall.SIGUSR1)
			sent++
			runtime.Gosched()
		}
	}()
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			runtime.LockOSThread()
			ref, _, _ := syscall.RawSyscall(syscall.SYS_SET_TID_ADDRESS, uintptr(unsafe.Pointer(&clearTID[i])), 0, 0)
			tids[i] = int64(ref)
			for n := 0; n < calls; n++ {
				if tid, _, _ := syscall.RawSyscall(syscall.SYS_GETTID, 0, 0, 0); tid != ref {
					bad[i] = fmt.Sprintf("thread %d: gettid %d after %d calls, want %d", i, tid, n, ref)
					return
				}
				if pid, _, _ := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0); pid != 1 {
					bad[i] = fmt.Sprintf("thread %d: getpid %d, want 1", i, pid)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	stop.Store(true)
	<-done
	failed := false
	seen := map[int64]bool{}
	for i, t := range tids {
		if bad[i] != "" {
			fmt.Println("FAIL", bad[i])
			failed = true
		}
		if t <= 0 || seen[t] {
			fmt.Printf("FAIL thread %d: tid %d (all %v): want distinct positive tids\n", i, t, tids)
			failed = true
		}
		seen[t] = true
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("leafcalls: %d threads x %d calls agree; %d signals sent\n", threads, calls, sent)
}
