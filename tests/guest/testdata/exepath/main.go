// Command exepath prints os.Executable: /proc/self/exe names the program.
package main

import (
	"fmt"
	"os"
)

func main() {
	p, err := os.Executable()
	fmt.Println(p, err)
}
