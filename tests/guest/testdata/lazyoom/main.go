// Command lazyoom maps two anonymous regions of 48 MiB, each of which
// the free memory of a 64 MiB VM covers when it is mapped but not both,
// and touches every page of both. Lazy mappings are not reserved (as
// Linux overcommits), so the second runs out of pages: the program must
// end with the kernel's out-of-memory message and SIGKILL's status, as
// under Linux's OOM killer, not with a SIGSEGV. It prints each region's
// progress first.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	const size = 48 << 20
	var regions [][]byte
	for i := 0; i < 2; i++ {
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			fmt.Printf("mmap #%d: %v\n", i, err)
			os.Exit(1)
		}
		regions = append(regions, b)
	}
	fmt.Println("mapped 2 x 48 MiB")
	for i, b := range regions {
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		fmt.Printf("touched region %d\n", i)
	}
	fmt.Println("both touched: memory was not short")
}
