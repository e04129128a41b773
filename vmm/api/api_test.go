package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeVM records what the API asked.
type fakeVM struct {
	calls  []string
	paused bool
}

func (f *fakeVM) Pause() error {
	f.calls = append(f.calls, "pause")
	if f.paused {
		return errors.New("already paused")
	}
	f.paused = true
	return nil
}

func (f *fakeVM) Resume() error {
	f.calls = append(f.calls, "resume")
	if !f.paused {
		return errors.New("the VM is not paused")
	}
	f.paused = false
	return nil
}

func (f *fakeVM) Snapshot(name string, stop bool) (any, error) {
	f.calls = append(f.calls, "snapshot "+name)
	if name == "bad/name" {
		return nil, errors.New(`snapshot name "bad/name": '/' is not allowed`)
	}
	return map[string]any{"name": name, "stop": stop}, nil
}

func (f *fakeVM) Stop() error { f.calls = append(f.calls, "stop"); return nil }

func (f *fakeVM) Metrics() any { return map[string]int{"exits": 3} }

func TestAPI(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	sock := filepath.Join(t.TempDir(), "vm.sock")
	vm := &fakeVM{}
	srv, err := Listen(sock, vm, Info{PID: os.Getpid(), Image: "app.img"})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(sock)
	var info Info
	if err := c.Do("GET", "/vm", nil, &info); err != nil {
		t.Fatal(err)
	}
	if info.Image != "app.img" || info.PID != os.Getpid() || !strings.HasSuffix(info.API, "vm.sock") {
		t.Errorf("GET /vm = %+v", info)
	}
	// vmm ps sees it.
	vms, err := Running()
	if err != nil || len(vms) != 1 || vms[0].PID != os.Getpid() {
		t.Errorf("Running() = %+v, %v", vms, err)
	}
	if err := c.Do("POST", "/pause", nil, nil); err != nil {
		t.Error(err)
	}
	if err := c.Do("POST", "/pause", nil, nil); err == nil || !strings.Contains(err.Error(), "already paused") {
		t.Errorf("second pause: %v, want the VM's error", err)
	}
	if err := c.Do("POST", "/resume", nil, nil); err != nil {
		t.Error(err)
	}
	var snap map[string]any
	if err := c.Do("POST", "/snapshot", SnapshotRequest{Name: "warm", Stop: true}, &snap); err != nil {
		t.Fatal(err)
	}
	if snap["name"] != "warm" || snap["stop"] != true {
		t.Errorf("snapshot reply %v", snap)
	}
	if err := c.Do("POST", "/snapshot", SnapshotRequest{Name: "bad/name"}, nil); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("bad name: %v", err)
	}
	if err := c.Do("POST", "/snapshot", map[string]any{"nam": "x"}, nil); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("bad body: %v", err)
	}
	if err := c.Do("POST", "/snapshot", SnapshotRequest{}, nil); err == nil || !strings.Contains(err.Error(), "no snapshot name") {
		t.Errorf("no name: %v", err)
	}
	if err := c.Do("GET", "/nosuch", nil, nil); err == nil || !strings.Contains(err.Error(), "no such request") {
		t.Errorf("unknown path: %v", err)
	}
	if err := c.Do("GET", "/pause", nil, nil); err == nil {
		t.Error("GET /pause accepted")
	}
	var m map[string]int
	if err := c.Do("GET", "/metrics", nil, &m); err != nil || m["exits"] != 3 {
		t.Errorf("metrics %v, %v", m, err)
	}
	if err := c.Do("POST", "/stop", nil, nil); err != nil {
		t.Error(err)
	}
	want := "pause pause resume snapshot warm snapshot bad/name stop"
	if got := strings.Join(vm.calls, " "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	// A second server on the same socket is refused while the first serves.
	if _, err := Listen(sock, vm, Info{PID: 1}); err == nil {
		t.Error("second Listen on a live socket succeeded")
	}
	srv.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if vms, _ := Running(); len(vms) != 0 {
		t.Errorf("Running() after Close = %+v", vms)
	}
	if err := c.Do("GET", "/vm", nil, nil); err == nil || !strings.Contains(err.Error(), "no VM answers") {
		t.Errorf("closed socket: %v", err)
	}
	// A path that is a regular file is never replaced.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, []byte("keep"), 0o600)
	if _, err := Listen(f, vm, Info{PID: 1}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a file: %v", err)
	}
}

// serveFake starts a server of a fakeVM on a fresh socket.
func serveFake(t *testing.T, c Controller) (string, *Server) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	sock := filepath.Join(t.TempDir(), "vm.sock")
	srv, err := Listen(sock, c, Info{PID: os.Getpid(), Image: "app.img"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return sock, srv
}

// rawReply is a reply as read off the socket.
type rawReply struct {
	code    int
	headers map[string]string
	body    string
	rest    string // anything after the body: must be nothing
}

// roundTrip writes req on a new connection to sock, half-closes it if
// shut, and reads everything the server sends until it closes.
func roundTrip(t *testing.T, sock, req string, shut bool) string {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hung test fails, not hangs
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if shut {
		conn.(*net.UnixConn).CloseWrite()
	}
	b, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%q: reading the reply: %v", req, err)
	}
	return string(b)
}

func parseRaw(t *testing.T, s string) rawReply {
	t.Helper()
	head, body, ok := strings.Cut(s, "\r\n\r\n")
	if !ok {
		t.Fatalf("reply without a head: %q", s)
	}
	lines := strings.Split(head, "\r\n")
	var r rawReply
	if _, err := fmt.Sscanf(lines[0], "HTTP/1.1 %d", &r.code); err != nil {
		t.Fatalf("status line %q", lines[0])
	}
	r.headers = map[string]string{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		r.headers[k] = v
	}
	if cl, ok := r.headers["Content-Length"]; ok {
		n, _ := strconv.Atoi(cl)
		if n > len(body) {
			t.Fatalf("body %q shorter than Content-Length %d", body, n)
		}
		r.body, r.rest = body[:n], body[n:]
	} else {
		r.rest = body
	}
	return r
}

// TestAPIRaw: requests as bytes on the socket, well formed or not, get
// the status and JSON body docs/api.md says, in a reply with
// Content-Length, Content-Type and Connection: close.
func TestAPIRaw(t *testing.T) {
	vm := &fakeVM{}
	sock, _ := serveFake(t, vm)
	big := strings.Repeat("x", maxHeader)
	tests := []struct {
		name, req string
		shut      bool   // half-close after the request
		code      int    // want
		body      string // in the body (for 204: nothing)
	}{
		{"vm", "GET /vm HTTP/1.1\r\nHost: vm\r\n\r\n", false, 200, `"image": "app.img"`},
		{"http/1.0, bare LF", "GET /vm HTTP/1.0\n\n", false, 200, `"pid"`},
		{"absolute form and query", "GET http://vm/metrics?x=1 HTTP/1.1\r\nHost: vm\r\n\r\n", false, 200, `"exits": 3`},
		{"pause", "POST /pause HTTP/1.1\r\nContent-Length: 0\r\n\r\n", false, 204, ""},
		{"pause again", "POST /pause HTTP/1.1\r\n\r\n", false, 409, `"error": "already paused"`},
		{"resume", "POST /resume HTTP/1.1\r\n\r\n", false, 204, ""},
		{"resume not paused", "POST /resume HTTP/1.1\r\n\r\n", false, 409, "not paused"},
		{"snapshot", "POST /snapshot HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"a\",\"stop\":false}\r\n", false, 200, `"name": "a"`},
		{"snapshot expect", "POST /snapshot HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n{\"name\":\"b\"}", false, 200, `"name": "b"`},
		{"snapshot refused", "POST /snapshot HTTP/1.1\r\nContent-Length: 19\r\n\r\n{\"name\":\"bad/name\"}", false, 409, "not allowed"},
		{"snapshot no body", "POST /snapshot HTTP/1.1\r\n\r\n", false, 400, `body: EOF (want {\"name\": NAME, \"stop\": BOOL})`},
		{"snapshot unknown field", "POST /snapshot HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"nam\":\"x\"}", false, 400, "unknown field"},
		{"snapshot no name", "POST /snapshot HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", false, 400, "no snapshot name"},
		{"stop", "POST /stop HTTP/1.1\r\n\r\n", false, 204, ""},
		{"unknown path", "GET /nosuch HTTP/1.1\r\n\r\n", false, 404, "GET /nosuch: no such request"},
		{"wrong method", "GET /pause HTTP/1.1\r\n\r\n", false, 404, "GET /pause: no such request"},
		{"wrong method 2", "DELETE /vm HTTP/1.1\r\n\r\n", false, 404, "DELETE /vm: no such request"},
		{"request line", "GET /vm\r\n\r\n", false, 400, "malformed request line"},
		{"request line spaces", "GET  /vm HTTP/1.1\r\n\r\n", false, 400, "malformed request line"},
		{"method", "G(T /vm HTTP/1.1\r\n\r\n", false, 400, "malformed request line"},
		{"protocol", "GET /vm HTTP/2.0\r\n\r\n", false, 400, "speaks HTTP/1.1"},
		{"target", "GET vm HTTP/1.1\r\n\r\n", false, 400, "malformed request target"},
		{"header", "GET /vm HTTP/1.1\r\nHost vm\r\n\r\n", false, 400, "malformed header line"},
		{"header space", "GET /vm HTTP/1.1\r\nHost : vm\r\n\r\n", false, 400, "malformed header line"},
		{"folded header", "GET /vm HTTP/1.1\r\nX: a\r\n b\r\n\r\n", false, 400, "folded"},
		{"NUL", "GET /vm HTTP/1.1\r\nX: a\x00\r\n\r\n", false, 400, "control character"},
		{"oversized line", "GET /" + big + " HTTP/1.1\r\n\r\n", false, 400, "over 16384 bytes"},
		{"oversized headers", "GET /vm HTTP/1.1\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 100)+"\r\n", 200) + "\r\n", false, 400, "over 16384 bytes"},
		{"oversized body", "POST /snapshot HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", false, 400, "body of 65537 bytes: at most 65536"},
		{"content-length", "POST /snapshot HTTP/1.1\r\nContent-Length: -1\r\n\r\n", false, 400, "malformed Content-Length"},
		{"content-length plus", "POST /snapshot HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}", false, 400, "malformed Content-Length"},
		{"content-lengths", "POST /snapshot HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", false, 400, "conflicting"},
		{"short body", "POST /snapshot HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"name\":\"c\"}", true, 400, "body shorter than its Content-Length 40"},
		{"long body", "POST /snapshot HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}{\"name\":\"c\"}", false, 400, "no snapshot name"},
		{"chunked", "POST /snapshot HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false, 400, "Transfer-Encoding is not supported"},
		{"expect", "POST /snapshot HTTP/1.1\r\nExpect: magic\r\nContent-Length: 2\r\n\r\n{}", false, 400, "Expect"},
		{"cut head", "GET /vm HTTP/1.1\r\nHost: v", true, 400, "ends inside the head"},
		{"pipelined garbage", "GET /metrics HTTP/1.1\r\n\r\n\x00\x01garbage\r\nGET /vm HTTP/1.1\r\n\r\n", false, 200, `"exits": 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := roundTrip(t, sock, tt.req, tt.shut)
			if strings.HasPrefix(tt.req, "POST /snapshot HTTP/1.1\r\nExpect: 100") {
				cont, rest, ok := strings.Cut(s, "\r\n\r\n")
				if !ok || cont != "HTTP/1.1 100 Continue" {
					t.Fatalf("no 100 Continue: %q", s)
				}
				s = rest
			}
			r := parseRaw(t, s)
			if r.code != tt.code {
				t.Errorf("status %d, want %d: %q", r.code, tt.code, s)
			}
			if r.headers["Connection"] != "close" || r.rest != "" {
				t.Errorf("not a closing reply, or more after it: %q", s)
			}
			if tt.code == 204 {
				if r.body != "" || r.headers["Content-Length"] != "" {
					t.Errorf("204 with a body: %q", s)
				}
				return
			}
			if r.headers["Content-Type"] != "application/json" || r.headers["Content-Length"] == "" {
				t.Errorf("headers %v", r.headers)
			}
			if !strings.Contains(r.body, tt.body) {
				t.Errorf("body %q, want %q in it", r.body, tt.body)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(r.body), &v); err != nil {
				t.Errorf("body not a JSON object: %v: %q", err, r.body)
			}
			if tt.code >= 400 {
				if e, _ := v["error"].(string); e == "" {
					t.Errorf("failed request without an error message: %q", r.body)
				}
			}
		})
	}
	want := "pause pause resume resume snapshot a snapshot b snapshot bad/name stop"
	if got := strings.Join(vm.calls, " "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	// HEAD is GET without the body.
	s := roundTrip(t, sock, "HEAD /vm HTTP/1.1\r\n\r\n", false)
	get := parseRaw(t, roundTrip(t, sock, "GET /vm HTTP/1.1\r\n\r\n", false))
	head, rest, _ := strings.Cut(s, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || rest != "" || !strings.Contains(head+"\r\n", "\r\nContent-Length: "+get.headers["Content-Length"]+"\r\n") {
		t.Errorf("HEAD /vm: %q", s)
	}
}

// TestAPISlowClient: a client that sends nothing, or not all of its
// head, is dropped after the read timeout without a reply, and does not
// keep the server from answering others.
func TestAPISlowClient(t *testing.T) {
	defer func(d time.Duration) { headerTimeout = d }(headerTimeout)
	headerTimeout = 200 * time.Millisecond
	sock, _ := serveFake(t, &fakeVM{})
	for _, req := range []string{"", "GET /vm HTTP/1.1\r\nHost:", "POST /snapshot HTTP/1.1\r\nContent-Length: 10\r\n\r\n{"} {
		if s := roundTrip(t, sock, req, false); s != "" {
			t.Errorf("%q: a reply %q to a request that never ended", req, s)
		}
	}
	// Slow clients in parallel with a quick one.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := NewClient(sock).Do("GET", "/vm", nil, nil); err != nil {
		t.Error(err)
	}
}

// blockingVM's snapshot waits until the test lets it finish.
type blockingVM struct {
	fakeVM
	entered, finish chan struct{}
}

func (b *blockingVM) Snapshot(name string, stop bool) (any, error) {
	close(b.entered)
	<-b.finish
	return map[string]any{"name": name}, nil
}

// TestAPICloseDuringRequest: Close waits for a request in progress to
// get its reply (a snapshot with stop ends the VM, whose run closes the
// API, before the reply), closes connections that asked nothing yet,
// and then removes the socket.
func TestAPICloseDuringRequest(t *testing.T) {
	vm := &blockingVM{entered: make(chan struct{}), finish: make(chan struct{})}
	sock, srv := serveFake(t, vm)
	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	replied := make(chan error)
	go func() {
		var r map[string]any
		err := NewClient(sock).Do("POST", "/snapshot", SnapshotRequest{Name: "s", Stop: true}, &r)
		if err == nil && r["name"] != "s" {
			err = fmt.Errorf("reply %v", r)
		}
		replied <- err
	}()
	<-vm.entered
	closed := make(chan error)
	go func() { closed <- srv.Close() }()
	// The idle connection is closed without a reply.
	idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(idle); len(b) != 0 || err != nil {
		t.Errorf("idle connection at Close: %q, %v", b, err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a request in progress", err)
	default:
	}
	close(vm.finish)
	if err := <-replied; err != nil {
		t.Errorf("request in progress at Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

// TestAPICloseBound: a request that does not end holds Close only for
// closeGrace; its client then gets an error, not a hang.
func TestAPICloseBound(t *testing.T) {
	defer func(d time.Duration) { closeGrace = d }(closeGrace)
	closeGrace = 100 * time.Millisecond
	vm := &blockingVM{entered: make(chan struct{}), finish: make(chan struct{})}
	defer close(vm.finish)
	sock, srv := serveFake(t, vm)
	replied := make(chan error)
	go func() { replied <- NewClient(sock).Do("POST", "/snapshot", SnapshotRequest{Name: "s"}, nil) }()
	<-vm.entered
	if err := srv.Close(); err == nil || !strings.Contains(err.Error(), "still in progress") {
		t.Errorf("Close with a request that never ends: %v", err)
	}
	if err := <-replied; err == nil || !strings.Contains(err.Error(), "POST /snapshot: reading the reply") {
		t.Errorf("client of a request cut at Close: %v", err)
	}
}

// TestAPIHTTPClient: net/http's client (in the test only) takes the
// server's replies, keep-alive transport and all.
func TestAPIHTTPClient(t *testing.T) {
	sock, _ := serveFake(t, &fakeVM{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for i, tt := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/vm", "", 200, `"image": "app.img"`},
		{"GET", "/metrics", "", 200, `"exits": 3`},
		{"POST", "/pause", "", 204, ""},
		{"POST", "/snapshot", `{"name":"x"}`, 200, `"name": "x"`},
		{"POST", "/snapshot", strings.Repeat(" ", 2<<10) + `{"name":"y"}`, 200, `"name": "y"`},
		{"PUT", "/vm", "", 404, "no such request"},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		req, _ := http.NewRequest(tt.method, "http://vm"+tt.path, body)
		if i == 4 {
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tt.code || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s %s: %s %q %v", tt.method, tt.path, resp.Status, b, err)
		}
	}
}

// TestAPICurl: the curl commands docs/api.md shows work.
func TestAPICurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	vm := &fakeVM{}
	sock, _ := serveFake(t, vm)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"-sS", "-i", "--unix-socket", sock, "http://vm/metrics"}, []string{"HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n", "Content-Length: ", "Connection: close\r\n", `"exits": 3`}},
		{[]string{"-sS", "-X", "POST", "--unix-socket", sock, "-d", `{"name":"x"}`, "http://vm/snapshot"}, []string{`"name": "x"`}},
		{[]string{"-sS", "-i", "-X", "POST", "--unix-socket", sock, "http://vm/pause"}, []string{"HTTP/1.1 204 No Content\r\n"}},
		{[]string{"-sS", "-i", "--unix-socket", sock, "http://vm/nosuch"}, []string{"HTTP/1.1 404 Not Found\r\n", `"error": "GET /nosuch: no such request`}},
	} {
		out, err := exec.Command("curl", tt.args...).CombinedOutput()
		if err != nil {
			t.Errorf("curl %q: %v\n%s", tt.args, err, out)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("curl %q: %q has no %q", tt.args, out, w)
			}
		}
	}
	if got := strings.Join(vm.calls, " "); got != "snapshot x pause" {
		t.Errorf("calls %q", got)
	}
}
