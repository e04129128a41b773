// Command othermod lives in a module of its own, to test `vmm build` of
// programs outside Amber's module.
package main

import (
	"flag"
	"fmt"
)

func main() {
	name := flag.String("name", "nobody", "who to greet")
	flag.Parse()
	fmt.Printf("hello %s from another module\n", *name)
}
