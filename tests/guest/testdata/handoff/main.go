// Command handoff measures how fast work passes between two goroutines
// when one side blocks in a system call: the path a system call served by a
// service goroutine takes (docs/kernel.md, "Services"). It prints the
// median round trip of each mode, for the guest and natively alike:
//
//	chan:    a channel ping-pong, no system call (the floor)
//	pipe:    two pipes; every empty read returns EAGAIN, the reader parks in
//	         the runtime's netpoller and the kernel's epoll wakes it
//	service: a service object (package kernel/service): the program writes a
//	         byte and reads (EAGAIN, parks in the netpoller); the service
//	         goroutine, woken through its queue, pulls the byte and pushes
//	         it back. Amber only.
//	call:    a synchronous call on a service object (kernel/service's
//	         CallObject): the calling thread blocks in the core until the
//	         service answers. Amber only.
//
// GOMAXPROCS is 1 unless set: the hard case, where the service goroutine
// can only run once the caller has given up the P.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/amberos/amber/kernel/service"
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
		case "service":
			f = serviceRoundTrips
		case "call":
			f = callRoundTrips
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

// echoService serves one object: what the program writes comes back, and
// a call answers its argument plus one. It returns when the program has
// closed the object.
func echoService(q *service.Queue, h service.Handle) error {
	reqs := make([]service.Request, 16)
	buf := make([]byte, 4096)
	for {
		n, err := q.Next(reqs)
		if err != nil {
			return err
		}
		for _, r := range reqs[:n] {
			switch r.Op {
			case service.Write:
				for {
					k, err := q.Pull(h, buf)
					if err == syscall.EAGAIN || k == 0 && err == nil {
						break
					}
					if err != nil {
						return err
					}
					if _, err := q.Push(h, buf[:k]); err != nil {
						return err
					}
				}
			case service.Call:
				if err := q.Complete(h, r.Seq, int64(r.Args[0])+1); err != nil {
					return err
				}
			case service.Close:
				return q.Drop(h)
			}
		}
	}
}

// serviceObject opens a queue with one object served by echoService.
func serviceObject(nonblock bool) (fd int, done chan error, err error) {
	q, err := service.Open()
	if err != nil {
		return -1, nil, err
	}
	fd, h, err := q.NewObject(1, nonblock)
	if err != nil {
		q.Close()
		return -1, nil, err
	}
	done = make(chan error, 1)
	go func() {
		err := echoService(q, h)
		q.Close()
		done <- err
	}()
	return fd, done, nil
}

func serviceRoundTrips(n int) error {
	fd, done, err := serviceObject(true)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "service-object")
	b := make([]byte, 1)
	for i := 0; i < n; i++ {
		if _, err := f.Write([]byte{byte(i)}); err != nil {
			return err
		}
		if _, err := io.ReadFull(f, b); err != nil {
			return err
		}
		if b[0] != byte(i) {
			return fmt.Errorf("round trip %d: got %d", i, b[0])
		}
	}
	f.Close()
	return <-done
}

func callRoundTrips(n int) error {
	fd, done, err := serviceObject(false)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		r, err := service.CallObject(fd, uint64(i))
		if err != nil {
			return err
		}
		if r != int64(i)+1 {
			return fmt.Errorf("call %d: got %d", i, r)
		}
	}
	syscall.Close(fd)
	return <-done
}
