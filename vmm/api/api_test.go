package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
