// Command debugdev drives the VMM's debug device (boot/debugdev.go) and
// times two round trips in the same run: a doorbell write (an ioeventfd,
// no exit) answered by the device goroutine with an interrupt (an irqfd)
// that the kernel's IRQ table counts, and the plain port-I/O hypercall
// (an exit served on the vCPU thread). It must run under `vmm run` with
// the debug device (vmm.Config.DebugDevice).
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// outl executes OUTL to port (outl_amd64.s): the guest runs at CPL3 with
// IOPL 3.
func outl(port uint16, v uint32)

// block is the hypercall request block. A global lives in the image, which
// is identity-mapped, so its address is its physical address.
var block boot.Hypercall

func reg(off uintptr) *uint32 {
	return (*uint32)(unsafe.Pointer(uintptr(boot.DebugDevPA) + off))
}

func irqCount(v uint32) uint64 {
	n, _, errno := syscall.RawSyscall(boot.SysAmberIRQCount, uintptr(v), 0, 0)
	if errno != 0 {
		fmt.Fprintln(os.Stderr, "amber_irq_count:", errno)
		os.Exit(1)
	}
	return uint64(n)
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func main() {
	n := flag.Int("n", 1000, "round trips of each kind")
	flag.Parse()
	if id := atomic.LoadUint32(reg(boot.DebugDevID)); id != boot.DebugDevMagic {
		fmt.Fprintf(os.Stderr, "debug device ID %#x, want %#x\n", id, boot.DebugDevMagic)
		os.Exit(1)
	}
	vec := atomic.LoadUint32(reg(boot.DebugDevVector))
	irqs0, served0 := irqCount(vec), atomic.LoadUint32(reg(boot.DebugDevServed))

	bell := make([]time.Duration, *n)
	for i := range bell {
		before := irqCount(vec)
		t0 := time.Now()
		atomic.StoreUint32(reg(boot.DebugDevDoorbell), 1)
		for irqCount(vec) == before {
		}
		bell[i] = time.Since(t0)
	}
	irqs, served := irqCount(vec)-irqs0, atomic.LoadUint32(reg(boot.DebugDevServed))-served0

	const unknown = 0xffff // no such hypercall: the VMM answers ENOSYS
	hc := make([]time.Duration, *n)
	pa := uint32(uintptr(unsafe.Pointer(&block)))
	for i := range hc {
		block.Nr, block.Ret = unknown, 0
		t0 := time.Now()
		outl(boot.HypercallPort, pa)
		hc[i] = time.Since(t0)
		if block.Ret != -38 {
			fmt.Fprintf(os.Stderr, "hypercall %#x returned %d, want ENOSYS\n", unknown, block.Ret)
			os.Exit(1)
		}
	}
	fmt.Printf("debugdev: vector %#x, %d doorbells, %d served, %d interrupts\n", vec, *n, served, irqs)
	fmt.Printf("doorbell->interrupt round trip: median %d ns\n", median(bell).Nanoseconds())
	fmt.Printf("port-I/O hypercall round trip: median %d ns\n", median(hc).Nanoseconds())
}
