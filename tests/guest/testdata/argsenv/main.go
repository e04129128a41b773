package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Printf("args=%q\n", os.Args[1:])
	fmt.Printf("AMBER_GREETING=%q\n", os.Getenv("AMBER_GREETING"))
	fmt.Printf("SPACED=%q\n", os.Getenv("SPACED"))
	fmt.Printf("my.var=%q\n", os.Getenv("my.var"))
	fmt.Printf("argv0=%s\n", os.Args[0][strings.LastIndex(os.Args[0], "/")+1:])
}
