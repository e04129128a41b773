package guest

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/tools/guestrun"
	"github.com/amberos/amber/tools/qemu"
)

// TestNetLoopback runs testdata/netloop in the guest: an HTTP server and
// client over 127.0.0.1, ::1 and the dual-stack wildcard (keep-alive and
// fresh connections), a 4 MiB echo with half-close, a refused connection
// and UDP, all on the network service's loopback interface; each check
// compares what came back. With GOMAXPROCS 1 and 2.
func TestNetLoopback(t *testing.T) {
	for _, procs := range []string{"1", "2"} {
		r := runGuest(t, "./testdata/netloop", guestrun.Config{Env: []string{"GOMAXPROCS=" + procs}})
		expect(t, r, 0, "netloop: udp echo ok", "fails ok", "rejected ok", "netloop: ok")
		if n := strings.Count(r.stdout, "40 requests ok"); n != 3 {
			t.Errorf("GOMAXPROCS=%s: %d HTTP checks passed, want 3:\n%s", procs, n, r.stdout)
		}
	}
}

// TestNoNetServiceWithoutNet: a program that does not import net gets no
// network service, so it stays small.
func TestNoNetServiceWithoutNet(t *testing.T) {
	for _, c := range []struct {
		pkg  string
		want bool
	}{{"./testdata/getpid", false}, {"./testdata/netloop", true}} {
		f, err := elf.Open(image(t, c.pkg))
		if err != nil {
			t.Fatal(err)
		}
		syms, err := f.Symbols()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		has := slices.ContainsFunc(syms, func(s elf.Symbol) bool { return strings.HasPrefix(s.Name, "github.com/amberos/amber/kernel/netsvc.") })
		if has != c.want {
			t.Errorf("%s: links the network service: %v, want %v", c.pkg, has, c.want)
		}
	}
}

// TestNetFlag: --net takes QEMU's user-mode network spelling or tap=NAME
// and refuses anything else with exit 2; under TCG only QEMU's user
// network.
func TestNetFlag(t *testing.T) {
	img := image(t, "./testdata/getpid")
	for _, c := range []struct {
		accel, spec, want string
	}{
		{"tcg", "tap,ifname=x", "want user["},
		{"kvm", "bogus", "want user["},
		{"kvm", "user,hostfwd=tcp:127.0.0.1:99999-:80", "not a port number"},
		{"kvm", "user,hostfwd=tcp:127.0.0.1:8080", "no '-'"},
		{"kvm", "tap=", "interface name"},
		{"kvm", "user,mac=01:00:00:00:00:01", "multicast"},
		{"tcg", "tap=tap0", "under --accel tcg"},
		{"tcg", "user,mac=52:54:00:00:00:01", "under --accel tcg"},
	} {
		r := run(t, "run", "--accel", c.accel, "--net", c.spec, img)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("--accel %s --net %s: exit %d, stderr %q; want %d and %q", c.accel, c.spec, r.code, r.stderr, exitUsage, c.want)
		}
	}
	got := strings.Join(qemu.Args(qemu.Config{Image: img, Memory: 128 << 20, Network: true, Net: "hostfwd=tcp:127.0.0.1:18080-:80"}), " ")
	for _, want := range []string{"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:18080-:80", "-device virtio-net-device,netdev=n0", "virtio-mmio.force-legacy=false", "amber.ip=10.0.2.15/24 amber.gw=10.0.2.2 amber.dns=10.0.2.3"} {
		if !strings.Contains(got, want) {
			t.Errorf("QEMU arguments lack %q: %s", want, got)
		}
	}
}

// TestNetUserKVM boots apps/httpd on Amber's virtio-net device and the
// user-mode network (vmm run --net user,hostfwd=...): 1,000 host
// requests on one keep-alive connection and 100 on fresh connections
// through the forward, each answered correctly by the guest; 100 fetches
// by the guest from a host server through the NAT (10.0.2.2 is the
// host's 127.0.0.1); and a body that comes back whole. It passes only
// with the guest's virtio-net driver, the guest half of the network.
// Nested under QEMU's emulator (tools/nestkvm, make test's KVM stage),
// where a request costs ~100 times more, the counts are a tenth.
func TestNetUserKVM(t *testing.T) {
	needKVM(t)
	keepN, freshN := 1000, 100
	if os.Getenv("AMBER_TEST_PREBUILT") != "" {
		keepN, freshN = 100, 10
	}
	hostSrv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostSrv.Close()
	var hostHits atomic.Int64
	go http.Serve(hostSrv, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "the host answers %s", r.URL.Query().Get("i"))
		hostHits.Add(1)
	}))
	vm := startHTTPDVM(t)
	keep := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
	fresh := &http.Transport{DisableKeepAlives: true}
	defer keep.CloseIdleConnections()
	get := func(tr *http.Transport, path string) (string, error) {
		resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get(vm.base + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return string(b), fmt.Errorf("status %s", resp.Status)
		}
		return string(b), err
	}
	var conns atomic.Int64
	var ends syncBuf // how each keep-alive connection ended, for the failure
	keep.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		id := conns.Add(1)
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchedConn{Conn: c, id: id, log: &ends}, nil
	}
	for i := 0; i < keepN; i++ {
		path := fmt.Sprintf("/k%d", i)
		body, err := get(keep, path)
		if want := "hello from amber httpd: GET " + path + "\n"; err != nil || body != want {
			t.Fatalf("keep-alive request %d: %q, %v; want %q", i, body, err, want)
		}
	}
	// Keep-alive: one connection serves them all. Nothing on the way
	// closes an open connection (no idle timeouts in apps/httpd, the
	// forward or the stacks): a second connection means one was lost.
	if n := conns.Load(); n != 1 {
		var m any
		v := vm.api.Do("GET", "/metrics", nil, &m)
		t.Errorf("%d keep-alive requests took %d connections, want 1; how they ended:\n%s\nmetrics (%v): %v", keepN, n, ends.String(), v, m)
	}
	for i := 0; i < freshN; i++ {
		path := fmt.Sprintf("/f%d", i)
		body, err := get(fresh, path)
		if want := "hello from amber httpd: GET " + path + "\n"; err != nil || body != want {
			t.Fatalf("request %d on a fresh connection: %q, %v; want %q", i, body, err, want)
		}
	}
	hostPort := hostSrv.Addr().(*net.TCPAddr).Port
	for i := 0; i < freshN; i++ {
		body, err := get(keep, fmt.Sprintf("/get?url=http://10.0.2.2:%d/%%3Fi=%d", hostPort, i))
		if want := fmt.Sprintf("the host answers %d", i); err != nil || body != want {
			t.Fatalf("guest -> host through the NAT, fetch %d: %q, %v; want %q", i, body, err, want)
		}
	}
	if n := hostHits.Load(); n != int64(freshN) {
		t.Errorf("the host server answered %d fetches, want %d", n, freshN)
	}
	payload := bytes.Repeat([]byte("amber virtio-net "), 64<<10/17)
	resp, err := (&http.Client{Transport: keep}).Post(vm.base+"/echo", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	echo, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(echo, payload) {
		t.Errorf("echo of %d bytes: %d back, %v", len(payload), len(echo), err)
	}
	t.Logf("first answer %v after vmm run", vm.first)
}

var netBenchRE = regexp.MustCompile(`bench clients=(\d+) requests=\d+ req_per_s=([0-9.]+)`)

// BenchmarkHTTPLoopback: HTTP requests per second with 1 and 32
// keep-alive clients, server and clients in one guest on the network
// service's loopback interface, against the same program natively on the
// host's loopback. Under TCG the guest figures are the emulator's.
func BenchmarkHTTPLoopback(b *testing.B) {
	needGuest(b)
	native := filepath.Join(b.TempDir(), "netloop")
	if out, err := exec.Command("go", "build", "-o", native, "./testdata/netloop").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	for i := 0; i < b.N; i++ {
		g := runGuest(b, "./testdata/netloop", guestrun.Config{Args: []string{"-bench", "2000"}})
		out, err := exec.Command(native, "-bench", "20000").CombinedOutput()
		if g.code != 0 || err != nil {
			b.Fatalf("guest %d %s; native %v %s", g.code, g.stdout, err, out)
		}
		for _, m := range netBenchRE.FindAllStringSubmatch(g.stdout, -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			b.ReportMetric(v, "guest-c"+m[1]+"-req/s")
		}
		for _, m := range netBenchRE.FindAllStringSubmatch(string(out), -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			b.ReportMetric(v, "native-c"+m[1]+"-req/s")
		}
	}
}

// TestSnapshotNet: apps/httpd on the user network with a forward is
// snapshotted and stopped, then restored: the restore starts a new
// user network with the snapshot's forward, and the server, which never
// knew it was stopped, answers on the port again. (Connections open at
// the snapshot are lost: this client opens one per request.)
func TestSnapshotNet(t *testing.T) {
	needKVM(t)
	img := image(t, "../../apps/httpd")
	if prebuilt == "" {
		helper := filepath.Join(filepath.Dir(vmmBin), "vmm-net")
		if out, err := exec.Command("go", "build", "-o", helper, "../../tools/vmmnet").CombinedOutput(); err != nil {
			t.Fatalf("building vmm-net: %v\n%s", err, out)
		}
	}
	dir, store := storeRunDir(t)
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// answer waits for the server's answer through the forward.
	answer := func(what string, exited chan error) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Minute)
		for {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(b), "hello from amber httpd: GET /") {
					t.Fatalf("%s: GET /: %q", what, b)
				}
				return
			}
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("%s: vmm exited (%v) before answering", what, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no answer through the forward: %v", what, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	start := func(args ...string) (*bytes.Buffer, chan error, *exec.Cmd) {
		var out bytes.Buffer
		cmd := exec.Command(vmmBin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			if t.Failed() {
				t.Logf("vmm %s output:\n%s", args[0], out.String())
			}
		})
		return &out, exited, cmd
	}
	sock := filepath.Join(dir, "vm.sock")
	_, exited, _ := start("run", "--timeout", "600s", "--disk", store, "--api", sock, "--net", fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", port), img)
	answer("the original VM", exited)
	if r := run(t, "snapshot", "--api", sock, "--stop", "web"); r.code != 0 {
		t.Fatalf("vmm snapshot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	err = <-exited
	exited <- err
	// The port is free again: nothing answers until the restore.
	if _, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Fatal("the forward still answers after the VM stopped")
	}
	_, exited2, _ := start("restore", "--timeout", "600s", store+"@web")
	answer("the restored VM", exited2)
}

// watchedConn notes in log how a client connection ended: the read that
// failed (EOF: the far end closed; a reset), after how many bytes.
type watchedConn struct {
	net.Conn
	id   int64
	n    int64
	log  *syncBuf
	once sync.Once
}

func (c *watchedConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n += int64(k)
	if err != nil {
		c.once.Do(func() {
			fmt.Fprintf(c.log, "connection %d: read after %d bytes: %v (%v)\n", c.id, c.n, err, time.Now().Format(time.StampMilli))
		})
	}
	return k, err
}
