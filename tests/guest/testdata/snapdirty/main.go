// Command snapdirty holds 64 MiB of non-zero memory, prints "ready", and
// for each line on stdin writes the next 1 MiB of it and prints "dirtied
// N": BenchmarkSnapshotPause snapshots it fully once and then
// incrementally after each line, and TestSnapshotIncremental checks what
// the incremental snapshots hold.
package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i>>12) | 1
	}
	fmt.Println("ready")
	r := bufio.NewReader(os.Stdin)
	for n := 0; ; n++ {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		chunk := buf[(n%64)<<20 : (n%64+1)<<20]
		for i := range chunk {
			chunk[i] += byte(n) + 1
		}
		sum := 0
		for _, b := range buf {
			sum += int(b)
		}
		fmt.Println("dirtied", n+1, "sum", sum)
	}
}
