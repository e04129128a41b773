// Command hello is the smallest realistic Go program: the runtime plus fmt.
package main

import "fmt"

func main() {
	fmt.Println("hello from elfpatch testdata")
}
