// Command wc counts the words of a file; tools/compat builds it for
// GOOS=wasip1 and runs it with wazero.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	n := map[string]int{}
	for _, w := range strings.Fields(string(b)) {
		n[w]++
	}
	var ws []string
	for w := range n {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	for _, w := range ws {
		fmt.Println(w, n[w])
	}
}
