// Command irqstorm raises device interrupts back to back while its other
// goroutines make system calls, sleep, block on pipes and collect
// garbage, and checks that every interrupt was taken once and the
// program's own work came out right.
//
// Interrupts come from the kernel's echo vector (boot.IRQEchoVector: each
// self-IPI the program sends is answered by a second one raised inside
// the handler, so it lands between that handler's EOI and its IRETQ) on
// every accelerator, and with -debugdev from the VMM's debug device too,
// whose goroutine raises asynchronously, wherever the vCPU is (Amber's
// VMM only).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
)

func irqCount(v uint32) uint64 {
	n, _, errno := syscall.RawSyscall(boot.SysAmberIRQCount, uintptr(v), 0, 0)
	if errno != 0 {
		fmt.Fprintln(os.Stderr, "amber_irq_count:", errno)
		os.Exit(1)
	}
	return uint64(n)
}

func reg(off uintptr) *uint32 {
	return (*uint32)(unsafe.Pointer(uintptr(boot.DebugDevPA) + off))
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "irqstorm: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	n := flag.Int("n", 20000, "echo interrupts to raise per raiser")
	raisers := flag.Int("raisers", 2, "goroutines raising interrupts")
	debugdev := flag.Bool("debugdev", false, "also ring the debug device (Amber's VMM with the debug device)")
	flag.Parse()

	echo0 := irqCount(boot.IRQEchoVector)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var calls atomic.Int64

	// System calls of every kind the entry and exit paths take: the
	// direct-call fast path, blocking calls that switch threads, sleeps.
	pid := os.Getpid()
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for i := 0; i < 1000; i++ {
					if p, _, _ := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0); int(p) != pid {
						fail("getpid returned %d, want %d", p, pid)
					}
				}
				calls.Add(1000)
				runtime.Gosched()
			}
		}()
	}
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		fail("pipe: %v", err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		var b [1]byte
		for i := 0; !stop.Load(); i++ {
			b[0] = byte(i)
			_, err := syscall.Write(fds[1], b[:])
			for err == syscall.EINTR { // the runtime's preemption signal
				_, err = syscall.Write(fds[1], b[:])
			}
			if err != nil {
				fail("pipe write: %v", err)
			}
		}
		syscall.Close(fds[1])
	}()
	go func() {
		defer wg.Done()
		var b [1]byte
		for i := 0; ; i++ {
			k, err := syscall.Read(fds[0], b[:])
			for err == syscall.EINTR {
				k, err = syscall.Read(fds[0], b[:])
			}
			if k == 0 && err == nil {
				return
			}
			if err != nil || b[0] != byte(i) {
				fail("pipe read %d: %d bytes, %v, byte %d", i, k, err, b[0])
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		var keep [][]byte
		for !stop.Load() {
			keep = append(keep, make([]byte, 4096))
			if len(keep) > 256 {
				keep = nil
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()

	var rwg sync.WaitGroup
	var rings uint32
	served0 := uint32(0)
	if *debugdev {
		if id := atomic.LoadUint32(reg(boot.DebugDevID)); id != boot.DebugDevMagic {
			fail("debug device ID %#x, want %#x", id, boot.DebugDevMagic)
		}
		served0 = atomic.LoadUint32(reg(boot.DebugDevServed))
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; i < *n; i++ {
				atomic.StoreUint32(reg(boot.DebugDevDoorbell), 1)
				rings++
			}
		}()
	}
	icr := (*uint32)(unsafe.Pointer(uintptr(boot.LAPICICR)))
	for r := 0; r < *raisers; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; i < *n; i++ {
				atomic.StoreUint32(icr, boot.LAPICSelfIPI|boot.IRQEchoVector)
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	rwg.Wait()
	stop.Store(true)
	wg.Wait()

	want := uint64(2 * *n * *raisers)
	if got := irqCount(boot.IRQEchoVector) - echo0; got != want {
		fail("%d echo interrupts taken, want %d", got, want)
	}
	if *debugdev {
		// The device answers every doorbell; interrupts raised while one
		// is pending merge, so there are at most as many as doorbells.
		deadline := time.Now().Add(30 * time.Second)
		for atomic.LoadUint32(reg(boot.DebugDevServed))-served0 != rings {
			if time.Now().After(deadline) {
				fail("debug device served %d of %d doorbells", atomic.LoadUint32(reg(boot.DebugDevServed))-served0, rings)
			}
			time.Sleep(time.Millisecond)
		}
		if irqCount(boot.DebugDevIRQ) == 0 {
			fail("no debug device interrupt taken")
		}
	}
	fmt.Printf("irqstorm ok: %d echo interrupts, %d system calls\n", want, calls.Load())
}
