// Command js runs a JavaScript file with goja and prints what console.log prints.
package main

import (
	"fmt"
	"os"

	"github.com/dop251/goja"
)

func main() {
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vm := goja.New()
	console := vm.NewObject()
	console.Set("log", func(c goja.FunctionCall) goja.Value {
		for i, a := range c.Arguments {
			if i > 0 {
				fmt.Print(" ")
			}
			fmt.Print(a.String())
		}
		fmt.Println()
		return goja.Undefined()
	})
	vm.Set("console", console)
	if _, err := vm.RunScript(os.Args[1], string(src)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
