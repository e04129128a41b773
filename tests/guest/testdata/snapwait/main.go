// Command snapwait prints "ready", waits for a line on stdin and prints
// "got LINE": BenchmarkRestore snapshots it while it waits, and times a
// restore against a cold boot, each given the line.
package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	fmt.Println("ready")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		fmt.Println("stdin:", err)
		os.Exit(1)
	}
	fmt.Print("got ", line)
}
