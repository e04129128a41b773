// Package api is the control API of a running VM: JSON over HTTP on a
// unix socket (vmm run --api PATH), as Firecracker's is, and the client
// the vmm commands use. docs/api.md is its reference.
//
// A server serves one VM through Controller; it is independent of KVM so
// that it can be tested anywhere.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Controller is what the API does to a VM.
type Controller interface {
	Pause() error
	Resume() error
	// Snapshot takes snapshot name; stop stops the VM after it.
	Snapshot(name string, stop bool) (any, error)
	Stop() error
	Metrics() any
}

// Info describes a VM: GET /vm, and the entries of the run directory
// that vmm ps lists.
type Info struct {
	PID     int       `json:"pid"`
	Image   string    `json:"image"`
	Disk    string    `json:"disk,omitempty"`
	API     string    `json:"api"`
	Started time.Time `json:"started"`
	From    string    `json:"restoredFrom,omitempty"` // STORE@SNAPSHOT for a restored VM
	// Forwards are the user network's host forwards as they listen
	// (QEMU's hostfwd spelling): a clone's are on ports of its own.
	Forwards []string `json:"forwards,omitempty"`
}

// SnapshotRequest is the body of POST /snapshot.
type SnapshotRequest struct {
	Name string `json:"name"`
	Stop bool   `json:"stop,omitempty"`
}

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
}

// Handler returns the API's HTTP handler for a VM.
func Handler(c Controller, info Info) http.Handler {
	mux := http.NewServeMux()
	action := func(f func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := f(); err != nil {
				reply(w, http.StatusConflict, Error{err.Error()})
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("GET /vm", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, info) })
	mux.HandleFunc("POST /pause", action(c.Pause))
	mux.HandleFunc("POST /resume", action(c.Resume))
	mux.HandleFunc("POST /stop", action(c.Stop))
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, c.Metrics()) })
	mux.HandleFunc("POST /snapshot", func(w http.ResponseWriter, r *http.Request) {
		var req SnapshotRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, Error{fmt.Sprintf("body: %v (want {\"name\": NAME, \"stop\": BOOL})", err)})
			return
		}
		if req.Name == "" {
			reply(w, http.StatusBadRequest, Error{"no snapshot name"})
			return
		}
		res, err := c.Snapshot(req.Name, req.Stop)
		if err != nil {
			reply(w, http.StatusConflict, Error{err.Error()})
			return
		}
		reply(w, http.StatusOK, res)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, Error{fmt.Sprintf("%s %s: no such request (see docs/api.md)", r.Method, r.URL.Path)})
	})
	return mux
}

func reply(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error": "encoding the reply"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// Server is a listening API socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	run  string // the run-directory entry, removed on Close
}

// Listen creates the socket at path and serves the API on it. A socket
// file left by a VMM that is gone is replaced; one that answers is not.
func Listen(path string, c Controller, info Info) (*Server, error) {
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("%s: another VMM is serving its API there", path)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; choose another --api path", path)
		}
		os.Remove(path) // a stale socket of ours
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(path)
	info.API = abs
	s := &Server{path: path, ln: ln, srv: &http.Server{Handler: Handler(c, info), ReadHeaderTimeout: 10 * time.Second}}
	go s.srv.Serve(ln)
	if dir, err := RunDir(); err == nil {
		if err := os.MkdirAll(dir, 0o700); err == nil {
			f := filepath.Join(dir, strconv.Itoa(info.PID)+".json")
			if b, err := json.Marshal(info); err == nil && os.WriteFile(f, b, 0o600) == nil {
				s.run = f
			}
		}
	}
	return s, nil
}

// Close stops serving and removes the socket and the run-directory entry.
// Requests being served get their replies first (a snapshot with stop
// ends the VM before its reply is written).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	os.Remove(s.path)
	if s.run != "" {
		os.Remove(s.run)
	}
	return err
}

// RunDir is where running VMs are listed: $XDG_RUNTIME_DIR/amber/vms (or
// /tmp/amber-UID/vms without it), one PID.json per VM with an API socket.
func RunDir() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "amber", "vms"), nil
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("amber-%d", os.Getuid()), "vms"), nil
}

// Running lists the VMs in the run directory whose process is alive;
// entries of processes that are gone are removed.
func Running() ([]Info, error) {
	dir, err := RunDir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		f := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var in Info
		if json.Unmarshal(b, &in) != nil || in.PID <= 0 {
			continue
		}
		if err := syscall.Kill(in.PID, 0); errors.Is(err, syscall.ESRCH) {
			os.Remove(f)
			continue
		}
		out = append(out, in)
	}
	return out, nil
}

// Client talks to a VM's API socket.
type Client struct {
	Path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	return &Client{Path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Do sends a request (body v as JSON, or none) and decodes the reply
// into out (if not nil). A failed request's error is the server's message.
func (c *Client) Do(method, path string, v, out any) error {
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://vm"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("%s: no VM answers there (%v)", c.Path, ne.Err)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}
