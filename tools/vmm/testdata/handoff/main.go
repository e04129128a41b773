// Command handoff measures how fast work passes between two goroutines
// when one side blocks in a system call: the path a system call served by a
// service goroutine takes (docs/kernel.md, "Services"). It prints the
// median round trip of each mode, for the guest and natively alike:
//
//	chan:    a channel ping-pong, no system call (the floor)
//	pipe:    two pipes; every empty read returns EAGAIN, the reader parks in
//	         the runtime's netpoller and the kernel's epoll wakes it
//
// GOMAXPROCS is 1 unless set: the hard case, where the service goroutine
// can only run once the caller has given up the P.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"
)

func main() {
	rounds := flag.Int("rounds", 11, "rounds (the median is printed)")
	n := flag.Int("n", 2000, "round trips per round")
	modes := flag.String("modes", "chan,pipe", "comma-separated modes")
	flag.Parse()
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	for _, mode := range splitComma(*modes) {
		var f func(int) error
		switch mode {
		case "chan":
			f = chanRoundTrips
		case "pipe":
			f = pipeRoundTrips
		default:
			fmt.Fprintf(os.Stderr, "handoff: unknown mode %q\n", mode)
			os.Exit(2)
		}
		var per []float64
		for r := 0; r < *rounds; r++ {
			t0 := time.Now()
			if err := f(*n); err != nil {
				fmt.Fprintf(os.Stderr, "handoff: %s: %v\n", mode, err)
				os.Exit(1)
			}
			per = append(per, float64(time.Since(t0).Nanoseconds())/float64(*n))
		}
		slices.Sort(per)
		fmt.Printf("%s_rt_ns=%.0f\n", mode, per[len(per)/2])
	}
}

func splitComma(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		if i > 0 {
			out = append(out, s[:i])
		}
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func chanRoundTrips(n int) error {
	ping, pong := make(chan byte), make(chan byte)
	go func() {
		for b := range ping {
			pong <- b
		}
		close(pong)
	}()
	for i := 0; i < n; i++ {
		ping <- byte(i)
		if b := <-pong; b != byte(i) {
			return fmt.Errorf("round trip %d: got %d", i, b)
		}
	}
	close(ping)
	return nil
}

func pipeRoundTrips(n int) error {
	r1, w1, err := os.Pipe()
	if err != nil {
		return err
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r2.Close()
	done := make(chan error, 1)
	go func() { // the "service": echoes pipe 1 to pipe 2
		defer w2.Close()
		b := make([]byte, 1)
		for {
			if _, err := r1.Read(b); err != nil {
				done <- nil
				return
			}
			if _, err := w2.Write(b); err != nil {
				done <- err
				return
			}
		}
	}()
	b := make([]byte, 1)
	for i := 0; i < n; i++ {
		if _, err := w1.Write([]byte{byte(i)}); err != nil {
			return err
		}
		if _, err := r2.Read(b); err != nil {
			return err
		}
		if b[0] != byte(i) {
			return fmt.Errorf("round trip %d: got %d", i, b[0])
		}
	}
	w1.Close()
	r1.Close()
	return <-done
}
