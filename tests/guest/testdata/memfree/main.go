// Command memfree maps, touches and unmaps 64 MiB a hundred times, which
// fits in a 512 MiB VM only if munmap gives the memory back, and checks
// that MADV_DONTNEED makes private anonymous memory read as zeros, as
// Linux does (the Go runtime relies on it), and that a read-only
// reservation larger than memory is granted. It prints "ALL OK" natively
// and in the guest. An argument sets the number of rounds.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func main() {
	const size = 64 << 20
	rounds := 100
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	sum := 0
	for i := 0; i < rounds; i++ {
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			fmt.Printf("mmap #%d: %v\n", i, err)
			os.Exit(1)
		}
		for j := 0; j < size; j += 4096 {
			b[j] = byte(i)
		}
		sum += int(b[size-4096])
		if err := syscall.Munmap(b); err != nil {
			fmt.Printf("munmap #%d: %v\n", i, err)
			os.Exit(1)
		}
	}
	fmt.Println(rounds, "cycles of 64 MiB, sum", sum)

	failed := false
	b, _ := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	for j := range b {
		b[j] = 0x5a
	}
	if err := syscall.Madvise(b[64<<10:128<<10], syscall.MADV_DONTNEED); err != nil {
		fmt.Println("madvise:", err)
		failed = true
	}
	nonzero, kept := 0, 0
	for j := range b {
		switch {
		case j >= 64<<10 && j < 128<<10:
			if b[j] != 0 {
				nonzero++
			}
		case b[j] == 0x5a:
			kept++
		}
	}
	fmt.Printf("after MADV_DONTNEED: %d non-zero bytes in the range, %d of %d bytes kept outside it\n", nonzero, kept, len(b)-64<<10)
	if nonzero != 0 || kept != len(b)-64<<10 {
		failed = true
	}
	// The released pages are usable again.
	b[100<<10] = 7
	fmt.Println("written after MADV_DONTNEED:", b[100<<10])

	// A read-only reservation larger than memory (starlark maps 4 GiB
	// this way) is granted, as Linux's overcommit grants it; the pages
	// touched read as zeros.
	r, err := syscall.Mmap(-1, 0, 4<<30, syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		fmt.Println("4 GiB read-only reservation:", err)
		failed = true
	} else {
		fmt.Println("4 GiB read-only reservation reads", r[0], r[3<<30], r[4<<30-1])
		if r[0] != 0 || r[3<<30] != 0 || r[4<<30-1] != 0 {
			failed = true
		}
		syscall.Munmap(r)
	}
	if failed {
		os.Exit(1)
	}
	fmt.Println("ALL OK")
}
