package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The user-mode network runs in its own process, vmm-net (tools/vmmnet,
// package vmm/usernet), started only for --net user: gVisor's TCP/IP
// stack and gvisor-tap-vsock's forwarders cost a process that links them
// several milliseconds of package initialisation at every start, which
// vmm run without --net must not pay (docs/architecture.md). Frames cross
// a SOCK_SEQPACKET socket pair, one frame per message, as passt and
// gvproxy's "bess" framing do; the helper dies with the VMM (parent-death
// signal, and the socket's end of file).

// NetHelper is the name of the user-mode network's program, looked for
// next to the running executable, then on $PATH.
const NetHelper = "vmm-net"

var errNetClosed = errors.New("network closed")

// netHelperPath, when set, is vmm-net's path (tests).
var netHelperPath string

// findNetHelper returns the path of vmm-net.
func findNetHelper() (string, error) {
	if netHelperPath != "" {
		return netHelperPath, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), NetHelper)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(NetHelper); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the user-mode network runs in %s, which is neither next to this program nor on $PATH (make builds it into bin/; or go build -o DIR/%s ./tools/vmmnet)", NetHelper, NetHelper)
}

// StartUserNet starts vmm-net for a guest with the given MAC and host
// forwards, and returns its end of the frames. It returns once the
// network is up: a forward that cannot listen is an error here.
func StartUserNet(mac net.HardwareAddr, forwards []HostFwd) (NetBackend, error) {
	be, ready, err := StartUserNetAsync(mac, forwards)
	if err != nil {
		return nil, err
	}
	if err := ready(); err != nil {
		return nil, err
	}
	return be, nil
}

// StartUserNetAsync is StartUserNet without the wait: it returns as soon
// as vmm-net runs, and ready waits until its network is up (the host
// forwards listen) or reports why it failed (the backend is then
// closed). The backend is usable at once: frames the guest sends wait
// in the socket pair until vmm-net reads them, so vmm can boot the guest
// while vmm-net's start (its package initialisation, tens of
// milliseconds) goes on.
func StartUserNetAsync(mac net.HardwareAddr, forwards []HostFwd) (be NetBackend, ready func() error, err error) {
	helper, err := findNetHelper()
	if err != nil {
		return nil, nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	// Room for a few full frames each way.
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	child := os.NewFile(uintptr(fds[1]), "vmm-net socket")
	defer child.Close()
	args := []string{"-mac", mac.String()}
	for _, f := range forwards {
		args = append(args, "-hostfwd", f.String())
	}
	cmd := exec.Command(helper, args...)
	cmd.Env = noHugeHeapEnv(os.Environ())
	cmd.ExtraFiles = []*os.File{child} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		unix.Close(fds[0])
		return nil, nil, err
	}
	msg := &capWriter{}
	cmd.Stderr = msg
	if err := cmd.Start(); err != nil {
		unix.Close(fds[0])
		return nil, nil, fmt.Errorf("starting %s: %w", helper, err)
	}
	unix.SetNonblock(fds[0], true)
	s := &sockNet{f: os.NewFile(uintptr(fds[0]), "vmm-net"), cmd: cmd}
	done := make(chan error, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		if f := strings.Fields(line); strings.HasSuffix(line, "\n") && len(f) > 0 && f[0] == "ready" {
			s.forwards = forwards
			if len(f) > 1 {
				s.forwards = nil
				for _, v := range f[1:] {
					if fw, err := parseHostFwd(v); err == nil {
						s.forwards = append(s.forwards, fw)
					}
				}
			}
			done <- nil
			return
		}
		s.Close()
		m := strings.TrimSpace(strings.TrimPrefix(msg.String(), NetHelper+": "))
		if m == "" {
			m = "it exited without a word"
		}
		done <- errors.New(m)
	}()
	var once sync.Once
	var rerr error
	ready = func() error {
		once.Do(func() { rerr = <-done })
		return rerr
	}
	return s, ready, nil
}

// sockNet is the VMM's end of vmm-net.
type sockNet struct {
	f        *os.File
	cmd      *exec.Cmd
	once     sync.Once
	forwards []HostFwd // as vmm-net listens on them, once ready
}

// UserNetForwards returns the host forwards of a user network started
// by StartUserNet (or StartUserNetAsync, once ready returned nil) as
// they listen: a host port 0 asked for is the port the kernel chose.
// nil for another backend.
func UserNetForwards(be NetBackend) []HostFwd {
	if s, ok := be.(*sockNet); ok {
		return append([]HostFwd(nil), s.forwards...)
	}
	return nil
}

func (s *sockNet) MTU() int       { return UserNetMTU }
func (s *sockNet) Verified() bool { return true }

func (s *sockNet) Send(frame []byte) error {
	_, err := s.f.Write(frame)
	return err
}

func (s *sockNet) Recv(buf []byte) (int, error) {
	n, err := s.f.Read(buf)
	if err == nil && n == 0 {
		err = errNetClosed // vmm-net is gone
	}
	return n, err
}

// Close ends a Recv in progress and vmm-net: its end of the socket reads
// end of file and it exits; one that does not within a second is killed,
// so that vmm never waits on it.
func (s *sockNet) Close() error {
	s.once.Do(func() {
		s.f.Close()
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	})
	return nil
}

// capWriter keeps the first 4 KiB written to it: vmm-net's error, without
// growing with whatever it logs later.
type capWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p[:min(len(p), 4096-len(w.buf))]...)
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// noHugeHeapEnv is env with disablethp=1 added to GODEBUG (unless it sets
// disablethp already): vmm-net's Go heap is ~1 MiB, and on a host in THP
// mode "always" its first chunk would otherwise be one 2 MiB huge page, in
// every clone's vmm-net (docs/benchmarks.md). The Makefile links the same
// default into vmm-net; this covers one built without it.
func noHugeHeapEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	set := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			set = true
			if !strings.Contains(","+v, ",disablethp=") {
				if v != "" {
					v += ","
				}
				kv = "GODEBUG=" + v + "disablethp=1"
			}
		}
		out = append(out, kv)
	}
	if !set {
		out = append(out, "GODEBUG=disablethp=1")
	}
	return out
}
