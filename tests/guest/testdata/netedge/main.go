// Command netedge checks socket behaviours the standard library's net
// tests found wrong in the guest, one line each, "netedge: ok" at the
// end; any failure exits non-zero.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

func fail(format string, a ...any) {
	fmt.Printf("netedge: FAIL: "+format+"\n", a...)
	os.Exit(1)
}

// udpZeroBuffer: recvfrom with a zero-length buffer takes the datagram
// and returns 0, as on Linux (it failed with EFAULT).
func udpZeroBuffer() {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		fail("listen udp: %v", err)
	}
	defer c.Close()
	for _, m := range []string{"first", "second"} {
		if _, err := c.WriteTo([]byte(m), c.LocalAddr()); err != nil {
			fail("udp write: %v", err)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := c.ReadFrom(nil)
	if err != nil || n != 0 {
		fail("udp read into a zero-length buffer: %d, %v; want 0, nil", n, err)
	}
	b := make([]byte, 3)
	n, _, err = c.ReadFrom(b)
	if err != nil || string(b[:n]) != "sec" {
		fail("udp read after it: %q, %v; want \"sec\" (the first datagram taken, the second truncated)", b[:n], err)
	}
	fmt.Println("netedge: udp zero-length read ok")
}

// reset: a peer that closes with SO_LINGER 0 resets the connection: the
// read fails with ECONNRESET once, then reads end of file (it read as end
// of file at once).
func reset() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Read(make([]byte, 1)) // connected on both sides
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fail("dial: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		fail("write: %v", err)
	}
	got, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		fail("read from a reset connection: %q, %v; want ECONNRESET", got, err)
	}
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		fail("read after ECONNRESET: %d, %v; want end of file", n, err)
	}
	fmt.Println("netedge: reset ok")
}

// interfaces: net.Interfaces and the interfaces' addresses come from
// netlink (NETLINK_ROUTE dumps; socket(AF_NETLINK) failed).
func interfaces() {
	ift, err := net.Interfaces()
	if err != nil {
		fail("interfaces: %v", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		fail("interface lo: %v (interfaces %v)", err, ift)
	}
	if lo.Flags&net.FlagLoopback == 0 || lo.Flags&net.FlagUp == 0 {
		fail("lo: flags %v", lo.Flags)
	}
	addrs, err := lo.Addrs()
	if err != nil {
		fail("lo's addresses: %v", err)
	}
	got := map[string]bool{}
	for _, a := range addrs {
		got[a.String()] = true
	}
	if !got["127.0.0.1/8"] || !got["::1/128"] {
		fail("lo's addresses %v, want 127.0.0.1/8 and ::1/128", addrs)
	}
	fmt.Println("netedge: interfaces ok")
}

// rights: descriptors passed over a Unix stream socket (SCM_RIGHTS; sendmsg
// with control data failed with EOPNOTSUPP) arrive with the data they
// came with, close-on-exec with MSG_CMSG_CLOEXEC.
func rights() {
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		fail("socketpair: %v", err)
	}
	defer syscall.Close(sp[0])
	defer syscall.Close(sp[1])
	f, err := os.CreateTemp("", "rights")
	if err != nil {
		fail("create: %v", err)
	}
	defer os.Remove(f.Name())
	f.WriteString("passed file")
	if err := syscall.Sendmsg(sp[0], []byte("ab"), nil, nil, 0); err != nil {
		fail("sendmsg: %v", err)
	}
	if err := syscall.Sendmsg(sp[0], []byte("c"), syscall.UnixRights(int(f.Fd())), nil, 0); err != nil {
		fail("sendmsg with SCM_RIGHTS: %v", err)
	}
	f.Close() // the description lives on in flight
	// The descriptor comes with the read that takes "c" (Linux merges
	// "ab" into it; a read that stops before "c" gets none).
	var data string
	buf, oob := make([]byte, 16), make([]byte, 64)
	oobn := 0
	for len(data) < 3 {
		n, on, flags, _, err := syscall.Recvmsg(sp[1], buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err != nil || n == 0 || flags&syscall.MSG_CTRUNC != 0 {
			fail("recvmsg after %q: %q, flags %#x, %v", data, buf[:n], flags, err)
		}
		data += string(buf[:n])
		if on > 0 && data != "abc" {
			fail("the descriptor came with %q, before \"c\"", data)
		}
		oobn = on
	}
	if data != "abc" {
		fail("received %q, want \"abc\"", data)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		fail("control messages: %v, %v", msgs, err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		fail("rights: %v, %v", fds, err)
	}
	fl, err := unixFcntl(fds[0], syscall.F_GETFD)
	if err != nil || fl&syscall.FD_CLOEXEC == 0 {
		fail("received descriptor's flags %#x, %v; want FD_CLOEXEC", fl, err)
	}
	got := make([]byte, 32)
	n, err := syscall.Pread(fds[0], got, 0)
	if err != nil || string(got[:n]) != "passed file" {
		fail("read from the received descriptor: %q, %v", got[:n], err)
	}
	syscall.Close(fds[0])
	// Descriptors nobody receives are closed with the socket.
	if err := syscall.Sendmsg(sp[0], []byte("d"), syscall.UnixRights(1), nil, 0); err != nil {
		fail("sendmsg: %v", err)
	}
	fmt.Println("netedge: rights ok")
}

func unixFcntl(fd, cmd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func main() {
	udpZeroBuffer()
	reset()
	interfaces()
	rights()
	fmt.Println("netedge: ok")
}
