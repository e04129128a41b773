// Command goroutineoom starts goroutines that never end until memory runs
// out: the Go runtime must report it itself ("out of memory", exit 2), as
// it does in a native process, not crash on the way.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	n := 100_000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	block := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			var pad [4096]byte // grows each stack past its first 8 KiB
			pad[i%4096] = 1
			<-block
			_ = pad
		}()
	}
	fmt.Println("started", n, "goroutines")
}
