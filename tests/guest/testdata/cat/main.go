// Command cat copies stdin to stdout in upper case and counts lines.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	s := bufio.NewScanner(os.Stdin)
	n := 0
	for s.Scan() {
		fmt.Println(strings.ToUpper(s.Text()))
		n++
	}
	if err := s.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "read error:", err)
		os.Exit(1)
	}
	fmt.Printf("%d lines\n", n)
}
