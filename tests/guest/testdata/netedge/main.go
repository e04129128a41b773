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

func main() {
	udpZeroBuffer()
	reset()
	interfaces()
	fmt.Println("netedge: ok")
}
