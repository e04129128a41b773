// Command chain is a guest-like program for the crash package's tests: a
// fixed call chain main -> a -> b -> c whose functions are never inlined, so
// each has its own frame and a CALL to the next.
package main

import "os"

var sink int

//go:noinline
func c(p *int) int {
	sink++
	return *p + 1 // LINE:c-deref
}

//go:noinline
func b(p *int) int {
	n := c(p) // LINE:b-calls-c
	return n * 2
}

//go:noinline
func a(p *int) int {
	n := b(p) // LINE:a-calls-b
	return n + 3
}

func main() {
	x := len(os.Args)
	os.Exit(a(&x)) // LINE:main-calls-a
}
