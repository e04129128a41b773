// Package api is the control API of a running VM: JSON over HTTP on a
// unix socket (vmm run --api PATH), as Firecracker's is, and the client
// the vmm commands use. docs/api.md is its reference.
//
// A server serves one VM through Controller; it is independent of KVM so
// that it can be tested anywhere.
//
// Both ends speak the few lines of HTTP/1.1 the API needs themselves
// (server.go, client.go) rather than through net/http: net/http, with
// crypto/tls, x509 and HTTP/2 it brings, was most of the vmm binary's
// package inits and of the pages it touches, and the VMM's own resident
// memory counts against every VM (docs/benchmarks.md, issue 14).
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
