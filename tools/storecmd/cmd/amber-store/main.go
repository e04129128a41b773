// Command amber-store runs the object store CLI (storecmd) on its own, for
// tests and for use without the vmm tool.
package main

import (
	"os"

	"github.com/amberos/amber/tools/storecmd"
)

func main() {
	os.Exit(storecmd.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
