package netsvc

import (
	"bytes"
	"errors"
	"net"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Socket addresses come from the program: short, foreign or garbage ones
// are errors, never a panic in the service.
func TestParseAddr(t *testing.T) {
	in4 := []byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	in6 := make([]byte, 28)
	in6[0], in6[1], in6[2], in6[3], in6[23] = 10, 0, 0, 80, 1
	cases := []struct {
		family int
		b      []byte
		want   syscall.Errno
	}{
		{syscall.AF_INET, nil, syscall.EINVAL},
		{syscall.AF_INET, []byte{2}, syscall.EINVAL},
		{syscall.AF_INET, in4[:7], syscall.EINVAL},
		{syscall.AF_INET, in4, 0},
		{syscall.AF_INET, in6, syscall.EAFNOSUPPORT},
		{syscall.AF_INET6, in6[:23], syscall.EINVAL},
		{syscall.AF_INET6, in6, 0},
		{syscall.AF_INET6, in4, 0}, // v4-mapped
		{syscall.AF_INET, []byte{1, 0, 'x'}, syscall.EAFNOSUPPORT},
		{syscall.AF_INET, bytes.Repeat([]byte{0xff}, 128), syscall.EAFNOSUPPORT},
	}
	for _, c := range cases {
		k := &sock{family: c.family, stream: true}
		fa, errno := k.parseAddr(c.b)
		if errno != c.want {
			t.Errorf("family %d, %x: errno %v, want %v", c.family, c.b, errno, c.want)
			continue
		}
		if errno != 0 {
			continue
		}
		// What it parsed writes back as the same address.
		back := k.sockaddr(fa)
		if c.family == syscall.AF_INET && !bytes.Equal(back, c.b) {
			t.Errorf("%x -> %v -> %x", c.b, fa, back)
		}
		if c.family == syscall.AF_INET6 && len(c.b) == 28 && !bytes.Equal(back, c.b) {
			t.Errorf("%x -> %v -> %x", c.b, fa, back)
		}
	}
}

func TestErrno(t *testing.T) {
	for _, c := range []struct {
		err  tcpip.Error
		want syscall.Errno
	}{
		{&tcpip.ErrConnectionRefused{}, syscall.ECONNREFUSED},
		{&tcpip.ErrPortInUse{}, syscall.EADDRINUSE},
		{&tcpip.ErrWouldBlock{}, syscall.EAGAIN},
		{&tcpip.ErrConnectStarted{}, syscall.EINPROGRESS},
		{&tcpip.ErrNotConnected{}, syscall.ENOTCONN},
	} {
		if got := errnoOf(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}

func TestLoopbackStack(t *testing.T) {
	st, err := NewStack()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !st.CheckNIC(loopNIC) {
		t.Fatal("no loopback interface")
	}
}

// A datagram longer than the buffer is truncated, not an error: a
// zero-length buffer takes the datagram and reads 0, as on Linux.
func TestTruncWriter(t *testing.T) {
	for _, n := range []int{0, 3, 10} {
		buf := make([]byte, n)
		w := truncWriter(buf)
		got, err := w.Write([]byte("datagram"))
		if got != 8 || err != nil {
			t.Errorf("buffer %d: Write = %d, %v; want 8, nil", n, got, err)
		}
		if want := "datagram"[:min(n, 8)]; string(buf[:min(n, 8)]) != want {
			t.Errorf("buffer %d: holds %q, want %q", n, buf, want)
		}
	}
}

// A connection's end reaches the program as the errno Linux gives: a
// keepalive timeout is ETIMEDOUT, not a reset.
func TestErrnoOfConn(t *testing.T) {
	for _, c := range []struct {
		err  tcpip.Error
		want syscall.Errno
	}{
		{&tcpip.ErrConnectionReset{}, syscall.ECONNRESET},
		{&tcpip.ErrTimeout{}, syscall.ETIMEDOUT},
		{&tcpip.ErrConnectionAborted{}, syscall.ECONNABORTED},
		{&tcpip.ErrHostUnreachable{}, syscall.EHOSTUNREACH},
	} {
		// As gonet reports it: the netstack error's text in an OpError.
		err := &net.OpError{Op: "read", Net: "tcp", Err: errors.New(c.err.String())}
		if got := errnoOfConn(err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
	if got := errnoOfConn(errors.New("something else")); got != syscall.ECONNRESET {
		t.Errorf("an unknown error: %v, want ECONNRESET", got)
	}
}
