package usernet

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amberos/amber/vmm"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// lossy is a backend whose frames are lost at random both ways, as a
// guest too slow to drain its ring loses them.
type lossy struct {
	backend
	mu      sync.Mutex
	rnd     *rand.Rand
	p       float64
	dropped atomic.Int64
}

func (l *lossy) lose() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rnd.Float64() < l.p {
		l.dropped.Add(1)
		return true
	}
	return false
}

func (l *lossy) Send(f []byte) error {
	if l.lose() {
		return nil
	}
	return l.backend.Send(f)
}

func (l *lossy) Recv(buf []byte) (int, error) {
	for {
		n, err := l.backend.Recv(buf)
		if err != nil || !l.lose() {
			return n, err
		}
	}
}

// TestUserNetForwardKeepAlive: a host net/http client's keep-alive
// requests through hostfwd to a net/http server on a gVisor stack in
// the guest's place (MTU 1500, as the guest's driver), with 1% of the
// frames lost each way: every request is answered on the one
// connection. Nothing on the way (the forward's proxy, the user-mode
// network's stack) closes a connection that is in use or idle between
// requests, and losses are TCP's to repair.
func TestUserNetForwardKeepAlive(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	be, err := New(testMAC, []vmm.HostFwd{{HostAddr: "127.0.0.1", HostPort: port, GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	link := &lossy{backend: be, rnd: rand.New(rand.NewSource(1)), p: 0.01}
	gs := guestStack(t, link, 1500)
	ln, err := gonet.ListenTCP(gs, tcpip.FullAddress{NIC: 1, Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello: %s\n", r.URL.Path)
	}))
	var conns atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: time.Minute} // bounds a failing test only
	const n = 1000
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("/k%d", i)
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello: " + path + "\n"; err != nil || string(b) != want {
			t.Fatalf("request %d: %q, %v; want %q", i, b, err, want)
		}
	}
	if got := conns.Load(); got != 1 || link.dropped.Load() == 0 {
		t.Errorf("%d requests took %d connections (want 1), %d frames lost", n, got, link.dropped.Load())
	}
}
