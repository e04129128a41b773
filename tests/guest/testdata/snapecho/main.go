// Command snapecho prints "ready", then answers each line on stdin with
// "echo LINE": BenchmarkCloneDensity snapshots it while it waits and
// starts clones of the snapshot, each of which must answer.
package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	fmt.Println("ready")
	r := bufio.NewReader(os.Stdin)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			fmt.Println("stdin:", err)
			os.Exit(1)
		}
		fmt.Print("echo ", line)
	}
}
