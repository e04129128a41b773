// Command netloop exercises sockets inside the guest over the loopback
// interface: TCP (an HTTP server and client, keep-alive and fresh
// connections, over 127.0.0.1 and ::1, a bulk transfer, half-close,
// a refused connection) and UDP. It prints one line per check and
// "netloop: ok" at the end; any failure exits non-zero.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func fail(format string, a ...any) {
	fmt.Printf("netloop: FAIL: "+format+"\n", a...)
	os.Exit(1)
}

func httpCheck(network, addr string) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		fail("listen %s %s: %v", network, addr, err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
	})}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String()
	for _, keep := range []bool{true, false} {
		tr := &http.Transport{DisableKeepAlives: !keep}
		c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
		for i := range 20 {
			body := strings.Repeat("x", i*100)
			resp, err := c.Post(fmt.Sprintf("%s/r%d", url, i), "text/plain", strings.NewReader(body))
			if err != nil {
				fail("%s request %d (keep-alive %v): %v", network, i, keep, err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("POST /r%d %d", i, len(body)); err != nil || string(got) != want {
				fail("%s request %d: %q, %v; want %q", network, i, got, err, want)
			}
		}
		tr.CloseIdleConnections()
	}
	fmt.Printf("netloop: http over %s %s: 40 requests ok\n", network, ln.Addr())
}

func bulk() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	defer ln.Close()
	const size = 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if c.LocalAddr() == nil || c.LocalAddr().String() != ln.Addr().String() || c.RemoteAddr() == nil {
			fail("accepted connection's addresses: %v <- %v (listener %v)", c.LocalAddr(), c.RemoteAddr(), ln.Addr())
		}
		c.(*net.TCPConn).SetNoDelay(true) // a socket option on an accepted socket
		// Echo everything, then half-close.
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		c.Close()
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fail("dial: %v", err)
	}
	if a, b := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr); !a.IP.IsLoopback() || b.Port != ln.Addr().(*net.TCPAddr).Port {
		fail("addresses %v -> %v", a, b)
	}
	done := make(chan []byte)
	go func() {
		b, err := io.ReadAll(c)
		if err != nil {
			fail("read back: %v", err)
		}
		done <- b
	}()
	t0 := time.Now()
	if _, err := c.Write(data); err != nil {
		fail("write: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	got := <-done
	el := time.Since(t0)
	c.Close()
	if !bytes.Equal(got, data) {
		fail("echo of %d bytes: got %d bytes, equal=%v", size, len(got), bytes.Equal(got, data))
	}
	fmt.Printf("netloop: bulk echo of %d bytes with half-close ok (%.1f MB/s each way)\n", size, float64(size)/el.Seconds()/1e6)
}

func refused() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.DialTimeout("tcp4", addr, 30*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		fail("dial of a closed port: %v, want ECONNREFUSED", err)
	}
	fmt.Println("netloop: connection refused ok")
}

// peerGone: a writer whose peer closed gets an error, not a ring that
// fills forever.
func peerGone() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	defer ln.Close()
	werr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			werr <- err
			return
		}
		defer c.Close()
		b := make([]byte, 1024)
		for {
			if _, err := c.Write(b); err != nil {
				werr <- err
				return
			}
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fail("dial: %v", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		fail("read: %v", err)
	}
	c.Close()
	select {
	case err := <-werr:
		fmt.Printf("netloop: write after the peer closed fails ok (%v)\n", err)
	case <-time.After(120 * time.Second):
		fail("writes still succeed 120 s after the peer closed")
	}
}

func udp() {
	a, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		fail("udp listen: %v", err)
	}
	defer a.Close()
	b, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fail("udp listen: %v", err)
	}
	defer b.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := a.ReadFrom(buf)
			if err != nil {
				return
			}
			a.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	buf := make([]byte, 2048)
	for i := range 10 {
		msg := fmt.Sprintf("datagram %d %s", i, strings.Repeat("u", i*100))
		if _, err := b.WriteTo([]byte(msg), a.LocalAddr()); err != nil {
			fail("udp write: %v", err)
		}
		b.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, from, err := b.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "echo:"+msg || from.String() != a.LocalAddr().String() {
			fail("udp read: %q from %v, %v", buf[:n], from, err)
		}
	}
	// A connected UDP socket: Read and Write.
	c, err := net.Dial("udp", a.LocalAddr().String())
	if err != nil {
		fail("udp dial: %v", err)
	}
	c.Write([]byte("connected"))
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "echo:connected" {
		fail("connected udp: %q, %v", buf[:n], err)
	}
	c.Close()
	fmt.Println("netloop: udp echo ok")
}

// bench serves HTTP on 127.0.0.1 and prints requests per second with
// 1 and 32 keep-alive clients, each making n/clients GET requests.
func bench(n int) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from amber\n")
	}))
	url := "http://" + ln.Addr().String() + "/"
	for _, clients := range []int{1, 32} {
		tr := &http.Transport{MaxIdleConnsPerHost: clients}
		c := &http.Client{Transport: tr}
		per := n / clients
		errs := make(chan error, clients)
		t0 := time.Now()
		for range clients {
			go func() {
				for range per {
					resp, err := c.Get(url)
					if err != nil {
						errs <- err
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || string(b) != "hello from amber\n" {
						errs <- fmt.Errorf("%q, %v", b, err)
						return
					}
				}
				errs <- nil
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				fail("bench: %v", err)
			}
		}
		el := time.Since(t0)
		fmt.Printf("netloop: bench clients=%d requests=%d req_per_s=%.0f\n", clients, per*clients, float64(per*clients)/el.Seconds())
		tr.CloseIdleConnections()
	}
}

// badPointers: socket calls given addresses that are not the program's
// fail with EFAULT or EINVAL; the service is never handed them.
func badPointers() {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		fail("socket: %v", err)
	}
	defer syscall.Close(fd)
	for _, c := range []struct {
		name       string
		nr, a2, a3 uintptr
		want       syscall.Errno
	}{
		{"bind to an unmapped address", syscall.SYS_BIND, 0x10, 16, syscall.EFAULT},
		{"bind with a huge length", syscall.SYS_BIND, 0x10, 1 << 20, syscall.EINVAL},
		{"connect to an unmapped address", syscall.SYS_CONNECT, 0x10, 16, syscall.EFAULT},
		{"getsockname into an unmapped buffer", syscall.SYS_GETSOCKNAME, 0x10, 0x20, syscall.EFAULT},
	} {
		if _, _, e := syscall.Syscall(c.nr, uintptr(fd), c.a2, c.a3); e != c.want {
			fail("%s: %v, want %v", c.name, e, c.want)
		}
	}
	if _, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, syscall.IPPROTO_UDP); err != syscall.EPROTONOSUPPORT {
		fail("a TCP socket with protocol UDP: %v, want EPROTONOSUPPORT", err)
	}
	fmt.Println("netloop: bad pointers and arguments rejected ok")
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-bench" {
		n, _ := strconv.Atoi(os.Args[2])
		bench(n)
		return
	}
	httpCheck("tcp4", "127.0.0.1:0")
	httpCheck("tcp", "[::1]:0")
	httpCheck("tcp", ":0")
	bulk()
	refused()
	peerGone()
	badPointers()
	udp()
	fmt.Println("netloop: ok")
}
