// Command spew writes numbered lines to stdout until a write fails, then
// reports the error on stderr and exits 3. Go programs die of SIGPIPE
// when stdout is a pipe without readers; with -ignore-sigpipe the signal
// is ignored and the write's EPIPE is reported instead.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ignore := flag.Bool("ignore-sigpipe", false, "ignore SIGPIPE")
	flag.Parse()
	if *ignore {
		signal.Ignore(syscall.SIGPIPE)
	}
	fmt.Fprintln(os.Stderr, "spew: writing")
	for i := 0; ; i++ {
		if _, err := fmt.Printf("line %d: the quick brown fox jumps over the lazy dog\n", i); err != nil {
			fmt.Fprintf(os.Stderr, "spew: write %d: %v\n", i, err)
			os.Exit(3)
		}
	}
}
