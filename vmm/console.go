package vmm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Console output. The guest's writes go to the VMM's stdout and stderr
// from the vCPU thread, and their errors go back to the guest (-EPIPE,
// -ENOSPC, -EIO). A write must never keep the VM from stopping: a pipe
// whose reader has stopped reading would otherwise hold the vCPU thread
// in write(2) past a timeout, Ctrl-C or SIGTERM. So each stream is
// written in one of three ways:
//
//   - regular files, block devices, character devices other than
//     terminals (/dev/null, /dev/full) and io.Discard: written directly;
//     such writes do not wait on another process.
//   - pipes, FIFOs and terminals: reopened through /proc/self/fd as a
//     private non-blocking description (the shared one keeps its flags),
//     and sockets: sent with MSG_DONTWAIT. A write that would block polls
//     the stream together with the VM's halt eventfd.
//   - anything else (an io.Writer that is not a file, or a stream that
//     cannot be reopened): written by a goroutine while the vCPU thread
//     waits for it or for a halt. The hand-off costs ~40 us per write on
//     these hosts, so it is the fallback only.
//
// After a halt, writes take what the stream accepts without waiting (the
// crash report of a timeout still reaches a terminal, and never hangs on
// a full pipe). A signal posted to the guest (the first Ctrl-C) interrupts
// a waiting write as it would a native process's: the guest gets what was
// written, or EINTR, and takes the signal.

// errHalted reports a write given up because the VM was told to stop.
var errHalted = errors.New("the VM is stopping")

// errInterrupted reports a write that waited and was interrupted by a
// signal for the guest before writing anything.
var errInterrupted = errors.New("interrupted by a signal for the guest")

// haltGrace is how long a hand-off write may still take once the VM is
// stopping, so that the crash report reaches a slow but working writer.
const haltGrace = time.Second

// halter tells blocked console writes to give up: a channel for hand-off
// waits and an eventfd for polls, set once when the VM is to stop; and an
// eventfd a signal for the guest sets, which the write that it interrupts
// clears.
type halter struct {
	once   sync.Once
	ch     chan struct{}
	fd     int
	intrFd int
}

func newHalter() (*halter, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	intr, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &halter{ch: make(chan struct{}), fd: fd, intrFd: intr}, nil
}

// interrupt makes a console write that waits return to the guest.
func (h *halter) interrupt() {
	var one [8]byte
	one[0] = 1
	unix.Write(h.intrFd, one[:])
}

func (h *halter) halt() {
	h.once.Do(func() {
		close(h.ch)
		var one [8]byte
		one[0] = 1
		unix.Write(h.fd, one[:])
	})
}

func (h *halter) halted() bool {
	select {
	case <-h.ch:
		return true
	default:
		return false
	}
}

func (h *halter) close() {
	for _, fd := range []*int{&h.fd, &h.intrFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// hostOut is one of the VMM's output streams.
type hostOut struct {
	w      io.Writer
	direct bool // w is a regular file: write it as it is
	fd     int  // >= 0: a non-blocking descriptor of our own for w
	sock   bool // fd is a socket: send with MSG_DONTWAIT

	// The hand-off fallback.
	req  chan []byte
	done chan outResult
	buf  []byte // what the goroutine writes: a copy, as guest memory may go away
	busy bool   // a write given up at a halt is still running
}

type outResult struct {
	n   int
	err error
}

func newHostOut(w io.Writer) *hostOut {
	o := &hostOut{w: w, fd: -1, direct: w == io.Discard}
	if f, ok := w.(*os.File); ok {
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { o.setup(int(fd)) })
		}
	}
	if !o.direct && o.fd < 0 {
		req, done := make(chan []byte), make(chan outResult, 1)
		o.req, o.done = req, done
		// The goroutine holds its own copies: close clears o.req.
		go func() {
			for p := range req {
				n, err := w.Write(p)
				done <- outResult{n, err}
			}
		}()
	}
	return o
}

// setup chooses how to write the file descriptor fd.
func (o *hostOut) setup(fd int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return
	}
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFCHR {
		if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
			typ = unix.S_IFREG // /dev/null, /dev/full: writes do not wait
		}
	}
	switch typ {
	case unix.S_IFREG, unix.S_IFBLK:
		o.direct = true
	case unix.S_IFSOCK:
		if nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			o.fd, o.sock = nfd, true
		}
	case unix.S_IFIFO, unix.S_IFCHR:
		// A new open file description of the same pipe or terminal, so
		// O_NONBLOCK does not change the one the shell and other
		// processes share. Opening a pipe with no reader left fails
		// (ENXIO): the hand-off then reports EPIPE.
		nfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		var nst unix.Stat_t
		if unix.Fstat(nfd, &nst) != nil || nst.Dev != st.Dev || nst.Ino != st.Ino || nst.Rdev != st.Rdev {
			unix.Close(nfd)
			return
		}
		o.fd = nfd
	}
}

// write writes p whole unless an error or a halt stops it.
func (o *hostOut) write(p []byte, h *halter) (int, error) {
	switch {
	case o.direct:
		return o.w.Write(p)
	case o.fd >= 0:
		return o.writeFd(p, h)
	}
	return o.handoff(p, h)
}

func (o *hostOut) writeFd(p []byte, h *halter) (int, error) {
	total := 0
	for len(p) > 0 {
		var n int
		var err error
		if o.sock {
			n, err = unix.SendmsgN(o.fd, p, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		} else {
			n, err = unix.Write(o.fd, p)
		}
		if n > 0 {
			total += n
			p = p[n:]
			continue
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			switch waitWritable(o.fd, h) {
			case waitHalted:
				return total, errHalted
			case waitInterrupted:
				if total > 0 {
					return total, nil
				}
				return 0, errInterrupted
			}
			continue
		case nil:
			return total, io.ErrShortWrite
		}
		return total, err
	}
	return total, nil
}

const (
	waitReady = iota
	waitHalted
	waitInterrupted
)

// waitWritable waits until fd can take data (or has an error to report),
// the VM is halted, or a signal for the guest interrupts the wait.
func waitWritable(fd int, h *halter) int {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}, {Fd: int32(h.fd), Events: unix.POLLIN}, {Fd: int32(h.intrFd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case err == unix.EINTR:
			continue
		case fds[1].Revents != 0 || err != nil:
			return waitHalted
		case fds[2].Revents != 0:
			var b [8]byte
			unix.Read(h.intrFd, b[:])
			return waitInterrupted
		case fds[0].Revents != 0:
			return waitReady
		}
	}
}

func (o *hostOut) handoff(p []byte, h *halter) (int, error) {
	if o.busy {
		select {
		case <-o.done:
			o.busy = false
		default:
			return 0, errHalted
		}
	}
	o.buf = append(o.buf[:0], p...)
	o.req <- o.buf
	select {
	case r := <-o.done:
		return r.n, r.err
	case <-h.ch:
	}
	t := time.NewTimer(haltGrace)
	defer t.Stop()
	select {
	case r := <-o.done:
		return r.n, r.err
	case <-t.C:
		o.busy = true
		o.buf = nil // the goroutine keeps the old one
		return 0, errHalted
	}
}

func (o *hostOut) close() {
	if o.fd >= 0 {
		unix.Close(o.fd)
		o.fd = -1
	}
	if o.req != nil {
		close(o.req)
		o.req = nil
	}
}

// consoleResult is the guest's view of a console write: the bytes
// written, or a negative errno when none were. A later write reports the
// error that cut a write short, as write(2) does.
func consoleResult(n int, err error) int64 {
	if n > 0 || err == nil {
		return int64(n)
	}
	if err == errInterrupted {
		return -int64(unix.EINTR)
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.EPIPE, unix.ENOSPC, unix.EDQUOT, unix.EFBIG, unix.EIO:
			return -int64(errno)
		case unix.ECONNRESET, unix.ENOTCONN, unix.ESHUTDOWN:
			return -int64(unix.EPIPE)
		}
	}
	return -int64(unix.EIO)
}

// consoleStream is a host output stream as an io.Writer for devices: a
// write gives up once the VM is stopping.
type consoleStream struct {
	o *hostOut
	h *halter
}

func (c consoleStream) Write(p []byte) (int, error) { return c.o.write(p, c.h) }

// stderrWriter is VM.Stderr: the VMM's own messages on the guest's
// stderr stream, under the same rules.
type stderrWriter struct{ vm *VM }

func (w stderrWriter) Write(p []byte) (int, error) {
	return w.vm.stderr.write(p, w.vm.halt)
}

// Stderr returns a writer for the VMM's own messages about this VM (a
// crash report, "interrupted"): it writes where the guest's stderr goes,
// in order with it, and once the VM is stopping it never waits for a
// stream that does not take the data.
func (vm *VM) Stderr() io.Writer { return stderrWriter{vm} }
