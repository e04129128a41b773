// Command hello is Amber's default app: it greets from inside the microVM.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Printf("Hello from Amber! (%s %s/%s, %d CPU)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if len(os.Args) > 1 {
		fmt.Println("args:", os.Args[1:])
	}
}
