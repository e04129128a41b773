// Command bootmark reports the moment main starts to the VMM (kernel.Mark),
// for the boot-time benchmark.
package main

import "github.com/amberos/amber/kernel"

func main() {
	kernel.Mark(1)
}
