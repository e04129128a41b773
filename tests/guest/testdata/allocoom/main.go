// Command allocoom allocates and keeps 8 MiB blocks until memory runs out:
// the Go runtime must report it itself ("fatal error: out of memory" or
// "cannot allocate memory", exit 2) because mmap said ENOMEM, as in a
// native process under ulimit -v, never die of a fault.
package main

import "fmt"

var keep [][]byte

func main() {
	for i := 0; ; i++ {
		b := make([]byte, 8<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
		if i%16 == 0 {
			fmt.Println("allocated", (i+1)*8, "MiB")
		}
	}
}
