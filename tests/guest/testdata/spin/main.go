// Command spin never finishes: the VMM must stop it (timeout or Ctrl-C).
package main

import "fmt"

var sink int

//go:noinline
func spinForever() {
	for i := 0; ; i++ {
		sink += i
	}
}

func main() {
	fmt.Println("spinning")
	spinForever()
}
