// Command snapcount counts in memory and appends each count to /data/log,
// checking after each append that the log holds exactly the counts so
// far: TestSnapshotRestore snapshots it mid-run and restores it, and the
// restored guest's memory (the count) and disk (the log) must agree.
//
//	snapcount LIMIT   count to LIMIT, one line per count:
//	                  "count N mono MS wall MS rand HEX", then "done N"
package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	limit, err := strconv.Atoi(os.Args[len(os.Args)-1])
	if err != nil {
		fmt.Println("usage: snapcount LIMIT")
		os.Exit(2)
	}
	start := time.Now()
	f, err := os.OpenFile("/data/log", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var want strings.Builder
	for n := 1; n <= limit; n++ {
		line := strconv.Itoa(n) + "\n"
		want.WriteString(line)
		if _, err := f.WriteString(line); err != nil {
			fmt.Println("append:", err)
			os.Exit(1)
		}
		if err := f.Sync(); err != nil {
			fmt.Println("sync:", err)
			os.Exit(1)
		}
		got, err := os.ReadFile("/data/log")
		if err != nil || string(got) != want.String() {
			fmt.Printf("MISMATCH at count %d: the log has %d bytes (%v), want %d\n", n, len(got), err, want.Len())
			os.Exit(1)
		}
		var r [8]byte
		rand.Read(r[:])
		fmt.Printf("count %d mono %d wall %d rand %x\n", n, time.Since(start).Milliseconds(), time.Now().UnixMilli(), r)
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("done", limit)
}
