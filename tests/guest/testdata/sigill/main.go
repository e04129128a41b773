// Command sigill executes an undefined instruction with the Go runtime's
// SIGILL handler in place: the runtime reports it, as on Linux.
package main

func ud2()

func main() {
	println("about to execute UD2")
	ud2()
}
