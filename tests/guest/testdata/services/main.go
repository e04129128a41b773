// Command services checks the kernel's service hand-off (kernel/service.go,
// package kernel/service) from both sides and prints one line per check:
// "ok NAME" or "FAIL NAME: why". It exits 1 if any check failed.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/amberos/amber/kernel/service"
)

var failed bool

func check(name string, err error) {
	if err != nil {
		failed = true
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	fmt.Printf("ok %s\n", name)
}

func main() {
	runtime.GOMAXPROCS(1)
	check("echo through the netpoller", echo())
	check("bulk data both ways", bulk())
	check("calls block until completed", calls())
	check("the program's close reaches the service", programClose())
	check("the service's drop is end of file and EPIPE", serviceDrop())
	check("a closed queue fails calls and ends reads", queueClosed())
	check("bad handles are refused", badHandles())
	check("poll readiness", readiness())
	if failed {
		os.Exit(1)
	}
}

func open(nonblock bool) (*service.Queue, int, service.Handle, error) {
	q, err := service.Open()
	if err != nil {
		return nil, -1, 0, err
	}
	fd, h, err := q.NewObject(42, nonblock)
	if err != nil {
		q.Close()
		return nil, -1, 0, err
	}
	return q, fd, h, nil
}

// serve runs handler on every request until it returns false.
func serve(q *service.Queue, handler func(service.Request) (bool, error)) chan error {
	done := make(chan error, 1)
	go func() {
		reqs := make([]service.Request, 8)
		for {
			n, err := q.Next(reqs)
			if err != nil {
				done <- err
				return
			}
			for _, r := range reqs[:n] {
				more, err := handler(r)
				if err != nil || !more {
					done <- err
					return
				}
			}
		}
	}()
	return done
}

func echo() error {
	q, fd, h, err := open(true)
	if err != nil {
		return err
	}
	defer q.Close()
	buf := make([]byte, 4096)
	done := serve(q, func(r service.Request) (bool, error) {
		if r.Cookie != 42 || r.Handle != h {
			return false, fmt.Errorf("request for cookie %d handle %#x, want 42 %#x", r.Cookie, r.Handle, h)
		}
		switch r.Op {
		case service.Write:
			for {
				n, err := q.Pull(h, buf)
				if errors.Is(err, syscall.EAGAIN) {
					return true, nil
				}
				if err != nil || n == 0 {
					return false, err
				}
				if _, err := q.Push(h, buf[:n]); err != nil {
					return false, err
				}
			}
		case service.Close:
			return false, q.Drop(h)
		}
		return true, nil
	})
	f := os.NewFile(uintptr(fd), "object")
	for i := 0; i < 100; i++ {
		msg := fmt.Sprintf("message %d", i)
		if _, err := f.Write([]byte(msg)); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(f, got); err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("sent %q, got %q", msg, got)
		}
	}
	f.Close()
	return <-done
}

// bulk sends 1 MiB through the object (more than its rings hold) while
// the service sends it back.
func bulk() error {
	q, fd, h, err := open(true)
	if err != nil {
		return err
	}
	defer q.Close()
	var pending []byte
	buf := make([]byte, 8192)
	flush := func() error {
		for len(pending) > 0 {
			n, err := q.Push(h, pending)
			if errors.Is(err, syscall.EAGAIN) {
				return nil // the next Read request says there is room
			}
			if err != nil {
				return err
			}
			pending = pending[n:]
		}
		return nil
	}
	done := serve(q, func(r service.Request) (bool, error) {
		switch r.Op {
		case service.Write:
			for len(pending) < 1<<16 {
				n, err := q.Pull(h, buf)
				if errors.Is(err, syscall.EAGAIN) || n == 0 && err == nil {
					break
				}
				if err != nil {
					return false, err
				}
				pending = append(pending, buf[:n]...)
			}
			return true, flush()
		case service.Read:
			if err := flush(); err != nil {
				return false, err
			}
			// Room again: take more of what the program wrote.
			for len(pending) < 1<<16 {
				n, err := q.Pull(h, buf)
				if errors.Is(err, syscall.EAGAIN) || n == 0 && err == nil {
					break
				}
				if err != nil {
					return false, err
				}
				pending = append(pending, buf[:n]...)
			}
			return true, flush()
		case service.Close:
			return false, q.Drop(h)
		}
		return true, nil
	})
	f := os.NewFile(uintptr(fd), "object")
	const size = 1 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := f.Write(data)
		werr <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(f, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	for i := range got {
		if got[i] != data[i] {
			return fmt.Errorf("byte %d: got %d, want %d", i, got[i], data[i])
		}
	}
	f.Close()
	return <-done
}

func calls() error {
	q, fd, h, err := open(false)
	if err != nil {
		return err
	}
	defer q.Close()
	done := serve(q, func(r service.Request) (bool, error) {
		switch r.Op {
		case service.Call:
			if err := q.Complete(h, r.Seq+1000, 0); !errors.Is(err, syscall.EINVAL) {
				return false, fmt.Errorf("completing the wrong call: %v, want EINVAL", err)
			}
			if r.Args[0] == 7 {
				return true, q.Complete(h, r.Seq, -int64(syscall.ENOENT))
			}
			return true, q.Complete(h, r.Seq, int64(r.Args[0])*2)
		case service.Close:
			return false, q.Drop(h)
		}
		return true, nil
	})
	for i := uint64(0); i < 20; i++ {
		r, err := service.CallObject(fd, i)
		if i == 7 {
			if !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("call 7: %d, %v; want ENOENT", r, err)
			}
			continue
		}
		if err != nil || r != int64(i)*2 {
			return fmt.Errorf("call %d: %d, %v", i, r, err)
		}
	}
	syscall.Close(fd)
	return <-done
}

func programClose() error {
	q, fd, h, err := open(true)
	if err != nil {
		return err
	}
	defer q.Close()
	got := make(chan service.Request, 4)
	done := serve(q, func(r service.Request) (bool, error) {
		got <- r
		return r.Op != service.Close, nil
	})
	syscall.Close(fd)
	select {
	case r := <-got:
		if r.Op != service.Close || r.Handle != h {
			return fmt.Errorf("got %v for %#x, want close for %#x", r.Op, r.Handle, h)
		}
	case <-time.After(10 * time.Second):
		return errors.New("no close request")
	}
	if err := <-done; err != nil {
		return err
	}
	if err := q.Drop(h); err != nil {
		return fmt.Errorf("drop after close: %v", err)
	}
	if err := q.Drop(h); !errors.Is(err, syscall.EBADF) {
		return fmt.Errorf("a second drop: %v, want EBADF (the object is freed)", err)
	}
	return nil
}

func serviceDrop() error {
	q, fd, h, err := open(false)
	if err != nil {
		return err
	}
	defer q.Close()
	if _, err := q.Push(h, []byte("last words")); err != nil {
		return err
	}
	if err := q.Drop(h); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := syscall.Read(fd, buf)
	if err != nil || string(buf[:n]) != "last words" {
		return fmt.Errorf("read after drop: %q, %v; want the pushed data", buf[:n], err)
	}
	if n, err := syscall.Read(fd, buf); n != 0 || err != nil {
		return fmt.Errorf("read at the end: %d, %v; want 0 (end of file)", n, err)
	}
	signalIgnored()
	if _, err := syscall.Write(fd, []byte("x")); !errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("write after drop: %v, want EPIPE", err)
	}
	if _, err := service.CallObject(fd, 1); !errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("call after drop: %v, want EPIPE", err)
	}
	return syscall.Close(fd)
}

func queueClosed() error {
	q, fd, _, err := open(false)
	if err != nil {
		return err
	}
	res := make(chan error, 1)
	go func() {
		_, err := service.CallObject(fd, 1)
		res <- err
	}()
	time.Sleep(50 * time.Millisecond) // the call is posted and waiting
	q.Close()
	if err := <-res; !errors.Is(err, syscall.EIO) {
		return fmt.Errorf("a call outstanding when the queue closed: %v, want EIO", err)
	}
	buf := make([]byte, 8)
	if n, err := syscall.Read(fd, buf); n != 0 || err != nil {
		return fmt.Errorf("read after the queue closed: %d, %v; want end of file", n, err)
	}
	return syscall.Close(fd)
}

func badHandles() error {
	q, fd, h, err := open(true)
	if err != nil {
		return err
	}
	defer q.Close()
	defer syscall.Close(fd)
	for _, bad := range []service.Handle{h + 1, h ^ 1<<16, 0xffff} {
		if _, err := q.Push(bad, []byte("x")); !errors.Is(err, syscall.EBADF) {
			return fmt.Errorf("push to %#x: %v, want EBADF", bad, err)
		}
	}
	// Another queue cannot touch this one's objects.
	q2, err := service.Open()
	if err != nil {
		return err
	}
	defer q2.Close()
	if _, err := q2.Push(h, []byte("x")); !errors.Is(err, syscall.EBADF) {
		return fmt.Errorf("push through another queue: %v, want EBADF", err)
	}
	// A pointer that is not the program's memory.
	if _, _, errno := syscall.Syscall6(503, 2, uintptr(queueFD(q)), uintptr(h), 0xdead0000000, 10, 0); errno != syscall.EFAULT {
		return fmt.Errorf("push from a bad address: %v, want EFAULT", errno)
	}
	return nil
}

func readiness() error {
	q, fd, h, err := open(true)
	if err != nil {
		return err
	}
	defer q.Close()
	defer syscall.Close(fd)
	fds := []pollFd{{fd: int32(fd), events: pollIn | pollOut}}
	if n := poll(fds); n != 1 || fds[0].revents != pollOut {
		return fmt.Errorf("fresh object: revents %#x, want POLLOUT", fds[0].revents)
	}
	if _, err := q.Push(h, []byte("x")); err != nil {
		return err
	}
	fds[0].revents = 0
	if n := poll(fds); n != 1 || fds[0].revents != pollIn|pollOut {
		return fmt.Errorf("after a push: revents %#x, want POLLIN|POLLOUT", fds[0].revents)
	}
	return nil
}
