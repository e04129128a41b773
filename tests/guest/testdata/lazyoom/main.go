// Command lazyoom maps two anonymous regions, each as large as mmap
// allows in the VM (so each fits in its free memory when mapped, but not
// both), and touches every page of both. Lazy mappings are not reserved
// (as Linux overcommits), so the second runs out of pages: the program
// must end with the kernel's out-of-memory message and SIGKILL's status,
// as under Linux's OOM killer, not with a SIGSEGV. It prints each
// region's progress first.
//
// The size is found, not fixed: what mmap allows moves with the image's
// size and with how much of the runtime's start-up heap was touched by
// its first clone (kernel/mem.go, chargeStart), which a fixed 48 MiB in a
// 64 MiB VM met only by a few MiB.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	size := 0
	var first []byte
	for mib := 1024; mib >= 8; mib-- {
		b, err := syscall.Mmap(-1, 0, mib<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err == nil {
			size, first = mib<<20, b
			break
		}
	}
	if first == nil {
		fmt.Println("mmap: not even 8 MiB")
		os.Exit(1)
	}
	second, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		fmt.Printf("mmap #1 of %d MiB: %v\n", size>>20, err)
		os.Exit(1)
	}
	fmt.Printf("mapped 2 x %d MiB\n", size>>20)
	for i, b := range [][]byte{first, second} {
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		fmt.Printf("touched region %d\n", i)
	}
	fmt.Println("both touched: memory was not short")
}
