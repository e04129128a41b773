package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The request line, headers and body must arrive within headerTimeout
// (net/http's ReadHeaderTimeout was this; it did not bound the body), and
// Close waits closeGrace for requests in progress (as the Shutdown
// context did). Variables so that tests can shorten them.
var (
	headerTimeout = 10 * time.Second
	closeGrace    = 5 * time.Second
)

const (
	maxHeader = 16 << 10 // request line and headers, in bytes
	maxBody   = 64 << 10 // the snapshot request's decoder read at most this
	// writeTimeout bounds writing a reply to a client that does not read.
	writeTimeout = 10 * time.Second
)

// Server is a listening API socket.
type Server struct {
	path string
	ln   net.Listener
	c    Controller
	info Info
	run  string // the run-directory entry, removed on Close
	// headerTimeout and closeGrace as Listen found them.
	headerTimeout, closeGrace time.Duration

	mu      sync.Mutex
	closed  bool
	reading map[net.Conn]bool // connections still reading their request
	conns   map[net.Conn]bool // every open connection
	busy    sync.WaitGroup    // connections being served
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
	s := &Server{path: path, ln: ln, c: c, info: info, headerTimeout: headerTimeout, closeGrace: closeGrace, reading: map[net.Conn]bool{}, conns: map[net.Conn]bool{}}
	go s.serve()
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

func (s *Server) serve() {
	for {
		conn, err := s.ln.Accept()
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			if conn != nil {
				conn.Close()
			}
			return
		}
		if err != nil {
			// Out of descriptors, say: wait as net/http does, not spin.
			s.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.conns[conn] = true
		s.reading[conn] = true
		s.busy.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// Close stops serving and removes the socket and the run-directory entry.
// Requests being served get their replies first (a snapshot with stop
// ends the VM before its reply is written), for up to closeGrace; then
// their connections are closed too and Close says so.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	for conn := range s.reading {
		conn.Close() // its read fails: nothing was asked yet
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.busy.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.closeGrace):
		s.mu.Lock()
		for conn := range s.conns {
			conn.Close()
		}
		s.mu.Unlock()
		err = fmt.Errorf("%s: requests still in progress after %v; their connections were closed", s.path, s.closeGrace)
	}
	os.Remove(s.path)
	if s.run != "" {
		os.Remove(s.run)
	}
	return err
}

// request is what the server reads of a request.
type request struct {
	method, path string
	body         []byte
}

// badRequest is a request the server answers 400 with its message.
type badRequest string

func (e badRequest) Error() string { return string(e) }

// serveConn serves one request on conn and closes it: replies say
// Connection: close, so every client reads to the reply's end and no
// connection is kept idle.
func (s *Server) serveConn(conn net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		delete(s.reading, conn)
		s.mu.Unlock()
		conn.Close()
		s.busy.Done()
	}()
	conn.SetReadDeadline(time.Now().Add(s.headerTimeout))
	br := bufio.NewReaderSize(conn, 4096)
	req, err := readRequest(br, conn)
	s.mu.Lock()
	closed := s.closed
	delete(s.reading, conn)
	s.mu.Unlock()
	if closed {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		writeReply(conn, "", 400, Error{string(bad)})
		return
	case err != nil:
		return // timed out, or the client went away: nobody to answer
	}
	code, v := s.handle(req)
	// From the reply, not the request: a snapshot may take longer.
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	writeReply(conn, req.method, code, v)
}

// handle does req and returns the reply's status and body (nil for none).
func (s *Server) handle(req *request) (int, any) {
	action := func(f func() error) (int, any) {
		if err := f(); err != nil {
			return 409, Error{err.Error()}
		}
		return 204, nil
	}
	method := req.method
	if method == "HEAD" {
		method = "GET" // as net/http's GET patterns; the body is not sent
	}
	switch method + " " + req.path {
	case "GET /vm":
		return 200, s.info
	case "GET /metrics":
		return 200, s.c.Metrics()
	case "POST /pause":
		return action(s.c.Pause)
	case "POST /resume":
		return action(s.c.Resume)
	case "POST /stop":
		return action(s.c.Stop)
	case "POST /snapshot":
		var sr SnapshotRequest
		dec := json.NewDecoder(bytes.NewReader(req.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sr); err != nil {
			return 400, Error{fmt.Sprintf("body: %v (want {\"name\": NAME, \"stop\": BOOL})", err)}
		}
		if sr.Name == "" {
			return 400, Error{"no snapshot name"}
		}
		res, err := s.c.Snapshot(sr.Name, sr.Stop)
		if err != nil {
			return 409, Error{err.Error()}
		}
		return 200, res
	}
	return 404, Error{fmt.Sprintf("%s %s: no such request (see docs/api.md)", req.method, req.path)}
}

// readRequest reads a request line, headers and a Content-Length body
// (RFC 9112), each bounded. A request the server cannot take is a
// badRequest; other errors are the connection's. w gets the interim 100
// Continue a client that sent Expect: 100-continue waits for.
func readRequest(br *bufio.Reader, w io.Writer) (*request, error) {
	budget := maxHeader
	line, err := readLine(br, &budget)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !isToken(parts[0]) {
		return nil, badRequest(fmt.Sprintf("malformed request line %q (want METHOD PATH HTTP/1.1)", clip(line)))
	}
	req := &request{method: parts[0]}
	switch parts[2] {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		return nil, badRequest(fmt.Sprintf("protocol %q: this API speaks HTTP/1.1", clip(parts[2])))
	}
	target := parts[1]
	if rest, ok := strings.CutPrefix(target, "http://"); ok { // absolute form
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			target = rest[i:]
		} else {
			target = "/"
		}
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i] // the API takes no query
	}
	if !strings.HasPrefix(target, "/") || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, badRequest(fmt.Sprintf("malformed request target %q", clip(parts[1])))
	}
	req.path = target

	length, chunked, expect := -1, false, false
	for {
		line, err := readLine(br, &budget)
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return nil, badRequest(fmt.Sprintf("malformed header line %q", clip(line)))
		}
		value = strings.Trim(value, " \t")
		switch strings.ToLower(name) {
		case "content-length":
			n, err := strconv.ParseUint(value, 10, 63)
			if err != nil || value == "" || value[0] == '+' {
				return nil, badRequest(fmt.Sprintf("malformed Content-Length %q", clip(value)))
			}
			if length >= 0 && int(n) != length {
				return nil, badRequest("conflicting Content-Length headers")
			}
			if n > maxBody {
				return nil, badRequest(fmt.Sprintf("body of %d bytes: at most %d", n, maxBody))
			}
			length = int(n)
		case "transfer-encoding":
			chunked = true
		case "expect":
			if !strings.EqualFold(value, "100-continue") {
				return nil, badRequest(fmt.Sprintf("Expect %q is not supported", clip(value)))
			}
			expect = true
		}
	}
	if chunked {
		return nil, badRequest("Transfer-Encoding is not supported: send the body with Content-Length")
	}
	if length <= 0 {
		return req, nil
	}
	if expect {
		if _, err := io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return nil, err
		}
	}
	req.body = make([]byte, length)
	if _, err := io.ReadFull(br, req.body); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, badRequest(fmt.Sprintf("body shorter than its Content-Length %d", length))
		}
		return nil, err
	}
	return req, nil
}

// readLine reads a line ended by CRLF (or a bare LF, as net/http takes)
// out of the budget left for the request's head.
func readLine(br *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > *budget {
			return "", badRequest(fmt.Sprintf("head (first line and headers) over %d bytes", maxHeader))
		}
		*budget -= len(frag)
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return "", badRequest("connection ends inside the head (first line and headers)")
			}
			return "", err
		}
		break
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	if bytes.ContainsAny(line, "\r\x00") {
		return "", badRequest(fmt.Sprintf("control character in %q", clip(string(line))))
	}
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return "", badRequest("folded header lines are not supported")
	}
	return string(line), nil
}

// isToken reports whether s is an RFC 9110 token (a method or header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// clip shortens what a reply quotes of a bad request.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// statusText is the reason phrase of the statuses the API uses.
func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 204:
		return "No Content"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 409:
		return "Conflict"
	}
	return "Internal Server Error"
}

// writeReply writes an HTTP/1.1 reply: v as indented JSON, or no body
// for 204 (which has neither Content-Length nor Content-Type, RFC 9110
// 8.6). For HEAD the headers say what GET would send.
func writeReply(w io.Writer, method string, code int, v any) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\n", code, statusText(code),
		time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	var body []byte
	if code != 204 {
		var err error
		body, err = json.MarshalIndent(v, "", "  ")
		if err != nil {
			b.Reset()
			fmt.Fprintf(&b, "HTTP/1.1 500 %s\r\nConnection: close\r\n", statusText(500))
			body = []byte(`{"error": "encoding the reply"}`)
		}
		body = append(body, '\n')
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	if method != "HEAD" {
		b.Write(body)
	}
	_, err := w.Write(b.Bytes())
	return err
}
