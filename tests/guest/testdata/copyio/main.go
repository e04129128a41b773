// Command copyio copies stdin to stdout unchanged. The first SIGINT is
// reported on stderr and otherwise ignored, so a Ctrl-C in the middle of
// the copy must neither lose nor repeat a byte.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt)
	go func() {
		<-c
		fmt.Fprintln(os.Stderr, "copyio: got SIGINT")
	}()
	n, err := io.Copy(os.Stdout, os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "copyio: after %d bytes: %v\n", n, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "copyio: %d bytes\n", n)
}
