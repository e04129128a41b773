package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// maxReply bounds the reply the client reads.
const maxReply = 16 << 20

// Client talks to a VM's API socket.
type Client struct {
	Path string
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client { return &Client{Path: path} }

// Do sends a request (body v as JSON, or none) and decodes the reply
// into out (if not nil). A failed request's error is the server's message.
func (c *Client) Do(method, path string, v, out any) error {
	var body []byte
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = b
	}
	if !isToken(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		return fmt.Errorf("%s %s: not a request", method, path)
	}
	conn, err := net.Dial("unix", c.Path)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("%s: no VM answers there (%v)", c.Path, ne.Err)
		}
		return err
	}
	defer conn.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: vm\r\nConnection: close\r\n", method, path)
	if body != nil {
		req.WriteString("Content-Type: application/json\r\n")
	}
	if body != nil || method == "POST" || method == "PUT" {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return fmt.Errorf("%s %s: %v", method, path, err)
	}
	code, status, b, err := readReply(bufio.NewReader(conn), method)
	if err != nil {
		return fmt.Errorf("%s %s: %v", method, path, err)
	}
	if code >= 300 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, status)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// readReply reads an HTTP/1.1 reply: its status code, status ("404 Not
// Found") and body, by Content-Length or to the end of the connection.
// Interim 1xx replies are skipped.
func readReply(br *bufio.Reader, method string) (int, string, []byte, error) {
	for {
		budget := maxHeader
		line, err := readLine(br, &budget)
		if err != nil {
			return 0, "", nil, fmt.Errorf("reading the reply: %v", err)
		}
		proto, status, ok := strings.Cut(line, " ")
		code, cerr := strconv.Atoi(status[:min(3, len(status))])
		if !ok || !strings.HasPrefix(proto, "HTTP/1.") || len(status) < 3 || cerr != nil || code < 100 {
			return 0, "", nil, fmt.Errorf("malformed reply %q", clip(line))
		}
		length, chunked := -1, false
		for {
			h, err := readLine(br, &budget)
			if err != nil {
				return 0, "", nil, fmt.Errorf("reading the reply: %v", err)
			}
			if h == "" {
				break
			}
			name, value, _ := strings.Cut(h, ":")
			value = strings.TrimSpace(value)
			switch strings.ToLower(name) {
			case "content-length":
				n, err := strconv.ParseUint(value, 10, 63)
				if err != nil {
					return 0, "", nil, fmt.Errorf("malformed Content-Length %q in the reply", clip(value))
				}
				length = int(min(n, maxReply+1))
			case "transfer-encoding":
				chunked = true
			}
		}
		if code < 200 {
			continue
		}
		if method == "HEAD" || code == 204 || code == 304 {
			return code, status, nil, nil
		}
		if chunked {
			return 0, "", nil, errors.New("a chunked reply: the API's replies have a Content-Length")
		}
		var b []byte
		if length >= 0 {
			if length > maxReply {
				return 0, "", nil, fmt.Errorf("reply of %d bytes: at most %d", length, maxReply)
			}
			b = make([]byte, length)
			_, err = io.ReadFull(br, b)
		} else {
			b, err = io.ReadAll(io.LimitReader(br, maxReply))
		}
		if err != nil {
			return 0, "", nil, fmt.Errorf("reading the reply: %v", err)
		}
		return code, status, b, nil
	}
}
