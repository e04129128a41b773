// Command unixsock exercises Unix-domain sockets the way programs use
// them (net's unix, unixgram and unixpacket networks, socketpair, shutdown,
// deadlines through the netpoller) and prints what it saw, so its output
// can be compared with a native run. It also prints what the kernel says
// to calls it lacks (xattrs, pidfd_open, inet sockets).
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func check(what string, err error) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	dir, err := os.MkdirTemp("", "unixsock")
	check("mkdtemp", err)
	defer os.RemoveAll(dir)
	stream(filepath.Join(dir, "s.sock"))
	stream("@amber-test-" + fmt.Sprint(os.Getpid()))
	gram(dir)
	packet(filepath.Join(dir, "p.sock"))
	pairs()
	missing(dir)
	fmt.Println("done")
}

func stream(addr string) {
	ln, err := net.Listen("unix", addr)
	check("listen", err)
	if addr[0] != '@' {
		st, err := os.Stat(addr)
		check("stat socket", err)
		fmt.Println("socket file:", st.Mode()&os.ModeSocket != 0)
		_, err = net.Listen("unix", addr)
		fmt.Println("second listen:", errors.Is(err, syscall.EADDRINUSE))
	}
	fmt.Println("listener addr ok:", ln.Addr().String() == addr)
	done := make(chan string)
	go func() {
		c, err := ln.Accept()
		check("accept", err)
		b, err := io.ReadAll(c) // until the client's CloseWrite
		check("server read", err)
		_, err = c.Write([]byte(strings.ToUpper(string(b))))
		check("server write", err)
		s := fmt.Sprintf("server local=%v remote=%q", c.LocalAddr().String() == addr, c.RemoteAddr().String())
		c.Close()
		done <- s
	}()
	c, err := net.Dial("unix", addr)
	check("dial", err)
	fmt.Println("client remote ok:", c.RemoteAddr().String() == addr)
	big := strings.Repeat("abcdefgh", 4096) // more than a ring holds
	_, err = c.Write([]byte(big))
	check("client write", err)
	check("close write", c.(*net.UnixConn).CloseWrite())
	b, err := io.ReadAll(c)
	check("client read", err)
	fmt.Println("echo ok:", string(b) == strings.ToUpper(big), len(b))
	fmt.Println(<-done)
	c.Close()

	// A read deadline ends a blocked read through the netpoller.
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(300 * time.Millisecond)
			c.Close()
		}
	}()
	c, err = net.Dial("unix", addr)
	check("dial 2", err)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	fmt.Println("deadline:", errors.Is(err, os.ErrDeadlineExceeded))
	c.SetReadDeadline(time.Time{})
	_, err = c.Read(make([]byte, 1))
	fmt.Println("after peer close:", err)
	c.Close()
	ln.Close()
	if addr[0] != '@' {
		_, err := os.Stat(addr)
		fmt.Println("removed on close:", os.IsNotExist(err))
	}
	_, err = net.Dial("unix", addr)
	fmt.Println("dial closed:", errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT))
}

func gram(dir string) {
	sa := &net.UnixAddr{Name: filepath.Join(dir, "g.sock"), Net: "unixgram"}
	srv, err := net.ListenUnixgram("unixgram", sa)
	check("listen unixgram", err)
	ca := &net.UnixAddr{Name: filepath.Join(dir, "c.sock"), Net: "unixgram"}
	cl, err := net.DialUnix("unixgram", ca, sa)
	check("dial unixgram", err)
	for _, m := range []string{"one", "", "three"} {
		_, err := cl.Write([]byte(m))
		check("gram write", err)
	}
	buf := make([]byte, 100)
	for i := 0; i < 3; i++ {
		n, from, err := srv.ReadFromUnix(buf)
		check("gram read", err)
		fmt.Printf("gram %q from client: %v\n", buf[:n], from != nil && from.Name == ca.Name)
	}
	_, err = srv.WriteToUnix([]byte("reply"), ca)
	check("gram reply", err)
	n, err := cl.Read(buf)
	check("gram read reply", err)
	fmt.Printf("gram reply %q\n", buf[:n])
	// A datagram longer than the buffer is cut short.
	cl.Write([]byte("0123456789"))
	n, _, flags, _, err := srv.ReadMsgUnix(buf[:4], nil)
	check("gram trunc", err)
	fmt.Printf("gram truncated %q trunc=%v\n", buf[:n], flags&syscall.MSG_TRUNC != 0)
	cl.Close()
	srv.Close()
}

func packet(addr string) {
	ln, err := net.Listen("unixpacket", addr)
	check("listen unixpacket", err)
	go func() {
		c, err := ln.Accept()
		check("accept packet", err)
		c.Write([]byte("first"))
		c.Write([]byte("second"))
		c.Close()
	}()
	c, err := net.Dial("unixpacket", addr)
	check("dial packet", err)
	buf := make([]byte, 100)
	for {
		n, err := c.Read(buf)
		if err != nil {
			fmt.Println("packet end:", err)
			break
		}
		fmt.Printf("packet %q\n", buf[:n])
	}
	c.Close()
	ln.Close()
}

func pairs() {
	for _, typ := range []int{syscall.SOCK_STREAM, syscall.SOCK_DGRAM, syscall.SOCK_SEQPACKET} {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, typ, 0)
		check("socketpair", err)
		a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		a.Write([]byte("ping"))
		a.Write([]byte("pong"))
		buf := make([]byte, 100)
		n, err := b.Read(buf)
		check("pair read", err)
		st, _ := a.Stat()
		fmt.Printf("pair type %d: read %q socket=%v\n", typ, buf[:n], st.Mode()&os.ModeSocket != 0)
		if typ == syscall.SOCK_STREAM {
			check("shutdown", syscall.Shutdown(fds[0], syscall.SHUT_WR))
			n, err := b.Read(buf)
			fmt.Println("after shutdown:", n, err)
			v, err := syscall.GetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_TYPE)
			fmt.Println("SO_TYPE:", v, err)
			_, err = syscall.GetsockoptInt(int(os.Stdin.Fd()), syscall.SOL_SOCKET, syscall.SO_TYPE)
			fmt.Println("getsockopt on stdin:", err)
			fmt.Println("write after shutdown:", errors.Is(writeErr(a), syscall.EPIPE))
		}
		a.Close()
		b.Close()
	}
}

func writeErr(f *os.File) error {
	_, err := f.Write([]byte("x"))
	return err
}

func missing(dir string) {
	// TCP on the network service's loopback: "tcp: false", as natively.
	_, err := net.Listen("tcp", "127.0.0.1:0")
	fmt.Println("tcp:", err != nil)
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o644)
	_, err = syscall.Getxattr(f, "user.x", make([]byte, 10))
	fmt.Println("getxattr:", err)
	err = syscall.Setxattr(f, "user.x", []byte("v"), 0)
	fmt.Println("setxattr:", err)
	_, err = syscall.Getxattr(filepath.Join(dir, "nope"), "user.x", nil)
	fmt.Println("getxattr missing:", err)
	_, _, e := syscall.Syscall(434, uintptr(os.Getpid()), 0, 0) // pidfd_open
	fmt.Println("pidfd_open:", e == syscall.ENOSYS || e == 0)
}
