// Command crashud2 executes an undefined instruction three calls deep, so
// the crash report has a backtrace to show.
package main

func ud2()

//go:noinline
func inner() { ud2() }

//go:noinline
func middle() { inner() }

func main() {
	println("about to crash")
	middle()
}
