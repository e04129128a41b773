package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/boot"
	"golang.org/x/sys/unix"
)

// writeRet runs one console write of s on a fake guest whose stdout is w
// and returns the hypercall's result.
func writeRet(t *testing.T, w io.Writer, s string) int64 {
	t.Helper()
	g := newFakeGuest(t, Config{Stdout: w})
	g.write(1, s)
	g.hypercall(boot.HCExit, 0, 0, 0)
	var ret int64
	exit := g.steps[1]
	g.steps[1] = func() unix.Errno {
		ret = g.ret()
		return exit()
	}
	if status, err := g.vm.loop(); status != 0 || err != nil {
		t.Fatalf("status %d, err %v", status, err)
	}
	return ret
}

type failWriter struct {
	n   int
	err error
}

func (w failWriter) Write(p []byte) (int, error) { return min(w.n, len(p)), w.err }

// `vmm run spew.img > /dev/full` told the guest its writes succeeded
// (issue 8): the guest gets the host's error, as a native program would.
func TestConsoleWriteErrors(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer full.Close()
	if r := writeRet(t, full, "hello\n"); r != -int64(unix.ENOSPC) {
		t.Errorf("/dev/full: %d, want -ENOSPC", r)
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	pr.Close()
	if r := writeRet(t, pw, "hello\n"); r != -int64(unix.EPIPE) {
		t.Errorf("pipe without readers: %d, want -EPIPE", r)
	}

	file := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if r := writeRet(t, f, "hello\n"); r != 6 {
		t.Errorf("regular file: %d, want 6", r)
	}
	if b, _ := os.ReadFile(file); string(b) != "hello\n" {
		t.Errorf("file holds %q", b)
	}

	for _, c := range []struct {
		w    io.Writer
		want int64
	}{
		{failWriter{0, errors.New("some failure")}, -int64(unix.EIO)},
		{failWriter{0, unix.EDQUOT}, -int64(unix.EDQUOT)},
		{failWriter{3, unix.ENOSPC}, 3}, // the next write reports the error
		{failWriter{6, nil}, 6},
	} {
		if r := writeRet(t, c.w, "hello\n"); r != c.want {
			t.Errorf("%+v: %d, want %d", c.w, r, c.want)
		}
	}
}

// blockedWriter blocks every write until released.
type blockedWriter struct {
	entered *atomic.Bool
	release chan struct{}
}

func (w blockedWriter) Write(p []byte) (int, error) {
	w.entered.Store(true)
	<-w.release
	return len(p), nil
}

// A console write that waits for a reader that never reads must not keep
// the VM from stopping (issue 8: --timeout and SIGTERM waited until the
// reader exited). Here the guest writes 1 MiB to each kind of stream
// that can block, and Stop comes while the write waits.
func TestStopWhileConsoleWriteBlocks(t *testing.T) {
	type stream struct {
		w       io.Writer
		blocked func() bool // the write is waiting
		cleanup func()
	}
	pipeStream := func(t *testing.T) stream {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return stream{pw, func() bool {
			n, _ := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
			return n >= 64<<10
		}, func() { pr.Close(); pw.Close() }}
	}
	socketStream := func(t *testing.T) stream {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		r, w := os.NewFile(uintptr(fds[1]), "r"), os.NewFile(uintptr(fds[0]), "w")
		return stream{w, func() bool {
			n, _ := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ)
			return n > 0
		}, func() { r.Close(); w.Close() }}
	}
	terminalStream := func(t *testing.T) stream {
		m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Skipf("no pseudo-terminals: %v", err)
		}
		if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
			t.Fatal(err)
		}
		n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
		if err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		return stream{w, func() bool {
			n, _ := unix.IoctlGetInt(m, unix.TIOCINQ)
			return n > 0
		}, func() { w.Close(); unix.Close(m) }}
	}
	handoffStream := func(t *testing.T) stream {
		w := blockedWriter{new(atomic.Bool), make(chan struct{})}
		return stream{w, w.entered.Load, func() { close(w.release) }}
	}
	for name, mk := range map[string]func(*testing.T) stream{"pipe": pipeStream, "socket": socketStream, "terminal": terminalStream, "writer": handoffStream} {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			defer s.cleanup()
			g := newFakeGuest(t, Config{Stdout: s.w})
			if own := g.vm.stdout.fd >= 0; own != (name != "writer") || g.vm.stdout.direct {
				t.Fatalf("written through its own non-blocking descriptor: %v, directly: %v", own, g.vm.stdout.direct)
			}
			g.vm.mem = &GuestMemory{mem: make([]byte, 4<<20)}
			g.write(1, strings.Repeat("x", 1<<20))
			g.hypercall(boot.HCExit, 0, 0, 0)
			done := make(chan int, 1)
			go func() {
				status, _ := g.vm.loop()
				done <- status
			}()
			for i := 0; i < 2000 && !s.blocked(); i++ {
				time.Sleep(time.Millisecond)
			}
			select {
			case status := <-done:
				t.Fatalf("the write did not block: status %d", status)
			default:
			}
			g.vm.Stop()
			select {
			case status := <-done:
				if status != ExitInterrupted {
					t.Errorf("status %d, want %d", status, ExitInterrupted)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the VM did not stop while its console write was blocked")
			}
			if g.runs != 1 {
				t.Errorf("%d runs, want 1 (the guest must not run again)", g.runs)
			}
		})
	}
}

// Once stopped, the VMM's own messages are written if the stream takes
// them, and given up if not, never waited for.
func TestStderrAfterStop(t *testing.T) {
	var b bytes.Buffer
	g := newFakeGuest(t, Config{Stderr: &b})
	g.vm.Stop()
	io.WriteString(g.vm.Stderr(), "vmm: report\n")
	if b.String() != "vmm: report\n" {
		t.Errorf("stderr %q", b.String())
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	g = newFakeGuest(t, Config{Stderr: pw})
	g.vm.Stop()
	n, err := g.vm.Stderr().Write(make([]byte, 1<<20))
	if err != errHalted || n < 4096 || n >= 1<<20 {
		t.Errorf("wrote %d bytes to a full pipe after a stop, err %v; want what fits, then errHalted", n, err)
	}
}

// A signal for the guest (the first Ctrl-C) interrupts a console write
// that waits for a full pipe, as it would a native write(2): the guest
// gets the bytes written so far, or EINTR if there were none, and can
// take the signal.
func TestSignalInterruptsBlockedWrite(t *testing.T) {
	for _, prefill := range []bool{false, true} {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		if prefill {
			wfd := int(pw.Fd())
			unix.SetNonblock(wfd, true)
			for {
				if _, err := unix.Write(wfd, make([]byte, 4096)); err != nil {
					break
				}
			}
		}
		full := func() bool {
			n, _ := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
			return n >= 64<<10
		}
		g := newFakeGuest(t, Config{Stdout: pw})
		g.vm.mem = &GuestMemory{mem: make([]byte, 4<<20)}
		g.write(1, strings.Repeat("x", 1<<20))
		var ret int64
		g.steps = append(g.steps, func() unix.Errno {
			ret = g.ret()
			return unix.EINTR
		})
		g.hypercall(boot.HCExit, 0, 0, 0)
		done := make(chan int, 1)
		go func() {
			status, _ := g.vm.loop()
			done <- status
		}()
		for i := 0; i < 2000 && !full(); i++ {
			time.Sleep(time.Millisecond)
		}
		g.vm.Signal(syscall.SIGINT)
		select {
		case status := <-done:
			if status != 0 {
				t.Errorf("status %d", status)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the signal did not interrupt the blocked write")
		}
		want := int64(64 << 10) // what the pipe took
		if prefill {
			want = -int64(unix.EINTR)
		}
		if ret != want {
			t.Errorf("prefilled %v: the write returned %d, want %d", prefill, ret, want)
		}
	}
}

// The VMM must not change the flags of the descriptions it shares with
// the shell and other processes (O_NONBLOCK on a terminal would outlive
// vmm): a pipe is written through a private reopened description.
func TestConsoleLeavesSharedFlags(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	defer r.Close()
	defer w.Close()
	before, _ := unix.FcntlInt(uintptr(p[1]), unix.F_GETFL, 0)
	go io.Copy(io.Discard, r)
	if ret := writeRet(t, w, strings.Repeat("y", 200<<10)); ret != 200<<10 {
		t.Errorf("wrote %d, want all of it", ret)
	}
	after, _ := unix.FcntlInt(uintptr(p[1]), unix.F_GETFL, 0)
	if before != after || after&unix.O_NONBLOCK != 0 {
		t.Errorf("flags of the shared description: %#x before, %#x after", before, after)
	}
}
