// Command gcstress allocates pointer-rich data from several goroutines
// while the collector runs, and checks every structure it built: memory
// corruption by the kernel (registers or memory not preserved) shows up
// as a wrong sum or a runtime crash.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

type node struct {
	key   string
	val   int
	left  *node
	right *node
	kids  map[string]*node
}

func insert(n *node, key string, val int) *node {
	if n == nil {
		return &node{key: key, val: val, kids: map[string]*node{key: nil}}
	}
	if key < n.key {
		n.left = insert(n.left, key, val)
	} else {
		n.right = insert(n.right, key, val)
	}
	return n
}

func sum(n *node) (int, int) {
	if n == nil {
		return 0, 0
	}
	a, c1 := sum(n.left)
	b, c2 := sum(n.right)
	if _, ok := n.kids[n.key]; !ok {
		panic("map lost its key")
	}
	if strconv.Itoa(n.val) != n.key[1:] {
		panic("node corrupted: " + n.key)
	}
	return a + b + n.val, c1 + c2 + 1
}

func main() {
	d := 3 * time.Second
	if len(os.Args) > 1 {
		d, _ = time.ParseDuration(os.Args[1])
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	rounds := make([]int, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				var root *node
				want := 0
				for i := 0; i < 2000; i++ {
					v := (i*7919 + g*104729) % 100003
					root = insert(root, "k"+strconv.Itoa(v), v)
					want += v
				}
				got, count := sum(root)
				if got != want || count != 2000 {
					panic(fmt.Sprintf("goroutine %d: sum %d want %d, %d nodes", g, got, want, count))
				}
				rounds[g]++
				if rounds[g]%10 == 0 {
					runtime.Gosched()
				}
			}
		}(g)
	}
	go func() {
		for time.Now().Before(deadline) {
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	total := 0
	for _, r := range rounds {
		total += r
	}
	fmt.Printf("gcstress ok: %d rounds\n", total)
}
