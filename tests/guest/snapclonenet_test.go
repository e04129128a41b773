package guest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// netVM is a vmm process with a network: its output lines (stdout and
// stderr together) arrive on lines and are kept in out.
type netVM struct {
	cmd    *exec.Cmd
	lines  chan string
	exited chan error
	mu     sync.Mutex
	out    strings.Builder
}

func startNetVM(t testing.TB, args ...string) *netVM {
	t.Helper()
	v := &netVM{cmd: exec.Command(vmmBin, args...), lines: make(chan string, 1000), exited: make(chan error, 1)}
	pr, pw := io.Pipe()
	v.cmd.Stdout, v.cmd.Stderr = pw, pw
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			v.mu.Lock()
			v.out.WriteString(sc.Text() + "\n")
			v.mu.Unlock()
			select {
			case v.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { err := v.cmd.Wait(); pw.Close(); v.exited <- err }()
	t.Cleanup(func() {
		v.cmd.Process.Signal(syscall.SIGTERM)
		err := <-v.exited
		v.exited <- err
		if t.Failed() {
			t.Logf("vmm %s output:\n%s", args[0], v.output())
		}
	})
	return v
}

func (v *netVM) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.String()
}

var hostfwdRE = regexp.MustCompile(`^vmm: hostfwd tcp:127\.0\.0\.1:(\d+)-:80$`)

// forwardedPort waits for the line vmm prints for a forward to guest port
// 80 and returns its host port.
func (v *netVM) forwardedPort(t testing.TB) int {
	t.Helper()
	p, err := v.tryPort(4 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (v *netVM) tryPort(timeout time.Duration) (int, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-v.lines:
			if m := hostfwdRE.FindStringSubmatch(l); m != nil {
				var p int
				fmt.Sscan(m[1], &p)
				return p, nil
			}
		case err := <-v.exited:
			v.exited <- err
			return 0, fmt.Errorf("vmm exited (%v) before printing its forward", err)
		case <-deadline:
			return 0, fmt.Errorf("no forward printed within %v", timeout)
		}
	}
}

// get waits for the guest's answer to GET path through host port port.
func (v *netVM) get(t testing.TB, port int, path string) string {
	t.Helper()
	body, err := v.tryGet(port, path, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (v *netVM) tryGet(port int, path string, timeout time.Duration) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			return "", fmt.Errorf("GET %s on port %d: %s %q %v", path, port, resp.Status, b, err)
		}
		select {
		case err := <-v.exited:
			v.exited <- err
			return "", fmt.Errorf("vmm exited (%v) before answering GET %s", err, path)
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("GET %s on port %d: no answer within %v: %v", path, port, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var ethMACRE = regexp.MustCompile(`(?m)^eth0 ([0-9a-f:]{17})$`)

// guestMAC is eth0's MAC as the guest's net.Interfaces lists it.
func (v *netVM) guestMAC(t testing.TB, port int) net.HardwareAddr {
	t.Helper()
	body := v.get(t, port, "/ifaces")
	m := ethMACRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/ifaces: no eth0 in %q", body)
	}
	mac, err := net.ParseMAC(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// buildNetHelper builds vmm-net next to vmm (the nested run has it).
func buildNetHelper(t testing.TB) {
	t.Helper()
	if prebuilt != "" {
		return
	}
	helper := filepath.Join(filepath.Dir(vmmBin), "vmm-net")
	if out, err := exec.Command("go", "build", "-o", helper, "../../tools/vmmnet").CombinedOutput(); err != nil {
		t.Fatalf("building vmm-net: %v\n%s", err, out)
	}
}

// TestSnapshotCloneNet: apps/httpd on the user network with a forward
// is snapshotted and stopped; two clones of the snapshot then run at
// once: one with the default (the snapshot's forward on a host port the
// kernel chooses, printed, and listed by vmm ps), one with --net giving
// another port. Both answer HTTP through their own forward, and each
// guest's interface has a MAC of its own (net.Interfaces in the guest,
// which the network service took from the device after the restore),
// neither the original's. The base store is unchanged, byte for byte,
// and fsck-clean.
func TestSnapshotCloneNet(t *testing.T) {
	needKVM(t)
	img := image(t, "../../apps/httpd")
	buildNetHelper(t)
	dir, store := storeRunDir(t)
	sock := filepath.Join(dir, "vm.sock")
	orig := startNetVM(t, "run", "--timeout", "600s", "--disk", store, "--api", sock, "--net", "user,hostfwd=tcp:127.0.0.1:0-:80", img)
	port := orig.forwardedPort(t)
	origMAC := orig.guestMAC(t, port)
	if r := run(t, "snapshot", "--api", sock, "--stop", "web"); r.code != 0 {
		t.Fatalf("vmm snapshot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	err := <-orig.exited
	orig.exited <- err
	base, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}

	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	given := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	c1 := startNetVM(t, "restore", "--timeout", "600s", "--api", filepath.Join(dir, "c1.sock"), "--clone", filepath.Join(dir, "c1.store"), store+"@web")
	c2 := startNetVM(t, "restore", "--timeout", "600s", "--clone", filepath.Join(dir, "c2.store"),
		"--net", fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", given), store+"@web")
	p1, p2 := c1.forwardedPort(t), c2.forwardedPort(t)
	if p2 != given {
		t.Errorf("clone 2 forwards port %d, want the --net's %d", p2, given)
	}
	if p1 == p2 {
		t.Fatalf("both clones forward port %d", p1)
	}
	if r := run(t, "ps"); !strings.Contains(r.stdout, fmt.Sprintf("tcp:127.0.0.1:%d-:80", p1)) {
		t.Errorf("vmm ps does not show clone 1's forward on port %d:\n%s%s", p1, r.stdout, r.stderr)
	}
	// Both answer, at once.
	for i, c := range []struct {
		vm   *netVM
		port int
	}{{c1, p1}, {c2, p2}} {
		if body := c.vm.get(t, c.port, "/clone"); !strings.Contains(body, "hello from amber httpd: GET /clone") {
			t.Errorf("clone %d: GET /clone: %q", i+1, body)
		}
	}
	m1, m2 := c1.guestMAC(t, p1), c2.guestMAC(t, p2)
	t.Logf("MACs: original %v, clones %v and %v", origMAC, m1, m2)
	if bytes.Equal(m1, m2) || bytes.Equal(m1, origMAC) || bytes.Equal(m2, origMAC) {
		t.Errorf("MACs seen by the guests: original %v, clones %v and %v; want three different", origMAC, m1, m2)
	}
	for _, m := range []net.HardwareAddr{m1, m2} {
		if m[0]&2 == 0 || m[0]&1 != 0 {
			t.Errorf("clone MAC %v is not a locally administered unicast address", m)
		}
	}
	// The clones still answer after the other's requests.
	if body := c1.get(t, p1, "/again"); !strings.Contains(body, "GET /again") {
		t.Errorf("clone 1 again: %q", body)
	}
	for _, c := range []*netVM{c1, c2} {
		c.cmd.Process.Signal(syscall.SIGTERM)
		err := <-c.exited
		c.exited <- err
	}
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Errorf("fsck of the base: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	after, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base, after) {
		t.Error("the base store changed")
	}
}
