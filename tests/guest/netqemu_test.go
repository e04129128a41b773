package guest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amberos/amber/tools/qemu"
)

// The guest's virtio-net driver against QEMU's virtio-net-device and
// user-mode network (slirp): a virtio implementation we did not write.
// vmm run --accel tcg --net user,hostfwd=... boots apps/httpd with
// QEMU's user-network defaults (amber.ip=10.0.2.15/24 amber.gw=10.0.2.2
// amber.dns=10.0.2.3, from tools/qemu), the host reaches it through the
// forwarded port, and the guest reaches the host's loopback as 10.0.2.2.

// netGuest is a running guest with a forwarded port.
type netGuest struct {
	base string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	out  *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNetGuest boots img under QEMU with a user-mode network forwarding
// a free host port to the guest's port 80, and waits until the guest
// answers there.
func startNetGuest(t testing.TB, img string, extra ...string) *netGuest {
	t.Helper()
	if err := qemu.Available(); err != nil {
		t.Skip(err)
	}
	port := freePort(t)
	args := append([]string{"run", "--accel", "tcg", "--timeout", "900s",
		"--net", fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", port)}, extra...)
	args = append(args, img)
	g := &netGuest{base: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuf{}}
	g.cmd = exec.Command(vmmBin, args...)
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		g.cmd.Wait()
	})
	deadline := time.Now().Add(180 * time.Second)
	c := &http.Client{Timeout: 10 * time.Second}
	for {
		resp, err := c.Get(g.base + "/ready")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "GET /ready") {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not answer on %s within 180s: %v\n%s", g.base, err, g.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (g *netGuest) get(t testing.TB, c *http.Client, path string) string {
	t.Helper()
	resp, err := c.Get(g.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v\nguest:\n%s", path, err, g.out.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", path, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}

// TestNetQEMU: apps/httpd in the guest answers a host net/http client
// through hostfwd (1,000 requests on one keep-alive connection, 100 on
// fresh ones, a 1 MiB body echoed both ways), fetches from a host
// server through the NAT by address and by a name from /etc/hosts, and
// resolves names from /etc/hosts. Takes about a minute under TCG.
func TestNetQEMU(t *testing.T) {
	needGuest(t)
	g := startNetGuest(t, image(t, "../../apps/httpd"))

	t.Run("keepalive", func(t *testing.T) {
		c := &http.Client{Timeout: 30 * time.Second}
		reused := 0
		for i := 0; i < 1000; i++ {
			trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
				if ci.Reused {
					reused++
				}
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", fmt.Sprintf("%s/k/%d", g.base, i), nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v\nguest:\n%s", i, err, g.out.String())
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("hello from amber httpd: GET /k/%d\n", i); err != nil || string(b) != want {
				t.Fatalf("request %d: %q, %v; want %q", i, b, err, want)
			}
		}
		if reused < 999 {
			t.Errorf("%d of 1000 requests reused the connection, want 999", reused)
		}
	})

	t.Run("fresh", func(t *testing.T) {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := 0; i < 100; i++ {
			if got, want := g.get(t, c, fmt.Sprintf("/f/%d", i)), fmt.Sprintf("hello from amber httpd: GET /f/%d\n", i); got != want {
				t.Fatalf("request %d: %q, want %q", i, got, want)
			}
		}
	})

	t.Run("echo", func(t *testing.T) {
		body := make([]byte, 1<<20)
		rand.Read(body)
		resp, err := http.Post(g.base+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("echo: %d bytes back (%v), want the %d sent", len(got), err, len(body))
		}
	})

	t.Run("client", func(t *testing.T) {
		token := rand.Text()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "host says %s to %s", token, r.URL.Path)
		}))
		defer srv.Close()
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		c := &http.Client{Timeout: 60 * time.Second}
		for _, host := range []string{"10.0.2.2", "gateway"} {
			u := fmt.Sprintf("http://%s:%d/from-guest", host, port)
			got := g.get(t, c, "/get?url="+url.QueryEscape(u))
			if want := "host says " + token + " to /from-guest"; got != want {
				t.Errorf("guest fetching %s: %q, want %q", u, got, want)
			}
		}
	})

	t.Run("hosts", func(t *testing.T) {
		c := &http.Client{Timeout: 30 * time.Second}
		for host, want := range map[string]string{"gateway": "10.0.2.2", "localhost": "127.0.0.1"} {
			if got := g.get(t, c, "/lookup?host="+host); !strings.Contains(got, want) {
				t.Errorf("lookup %s: %q, want %s", host, got, want)
			}
		}
	})
}

// BenchmarkHTTPQEMU: HTTP requests per second on one keep-alive
// connection from a host client to apps/httpd in a guest under QEMU's
// emulator (TCG) behind its user-mode network, against the same httpd
// built natively on the host's loopback, in the same run. The ratio
// measures QEMU's emulation and slirp far more than the driver.
func BenchmarkHTTPQEMU(b *testing.B) {
	needGuest(b)
	native := filepath.Join(b.TempDir(), "httpd")
	if out, err := exec.Command("go", "build", "-o", native, "../../apps/httpd").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	port := freePort(b)
	srv := exec.Command(native, "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	g := startNetGuest(b, image(b, "../../apps/httpd"))
	nat := &netGuest{base: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuf{}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(nat.base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("native httpd: %v", err)
		}
	}
	rate := func(g *netGuest, n int) float64 {
		c := &http.Client{Timeout: 30 * time.Second}
		start := time.Now()
		for i := 0; i < n; i++ {
			g.get(b, c, "/")
		}
		return float64(n) / time.Since(start).Seconds()
	}
	for i := 0; i < b.N; i++ {
		guest := rate(g, 300)
		host := rate(nat, 3000)
		b.ReportMetric(guest, "guest-req/s")
		b.ReportMetric(host, "native-req/s")
		b.ReportMetric(guest/host, "ratio")
	}
}

// TestNetQEMUDHCP: with amber.ip=dhcp the guest leases its address from
// QEMU's user network (slirp's DHCP server): the gateway it learns is in
// /etc/hosts, and the NAT carries its requests to a host server.
func TestNetQEMUDHCP(t *testing.T) {
	needGuest(t)
	g := startNetGuest(t, image(t, "../../apps/httpd"), "--cmdline", "amber.ip=dhcp")
	c := &http.Client{Timeout: 60 * time.Second}
	if got := g.get(t, c, "/lookup?host=gateway"); strings.TrimSpace(got) != "10.0.2.2" {
		t.Errorf("gateway from DHCP: %q, want 10.0.2.2", got)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host saw %s", r.URL.Path)
	}))
	defer srv.Close()
	u := fmt.Sprintf("http://10.0.2.2:%d/leased", srv.Listener.Addr().(*net.TCPAddr).Port)
	if got := g.get(t, c, "/get?url="+url.QueryEscape(u)); got != "host saw /leased" {
		t.Errorf("guest fetching %s: %q", u, got)
	}
}
