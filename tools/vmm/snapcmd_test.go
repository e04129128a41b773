package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/snapshot"
	"github.com/amberos/amber/vmm"
)

// The snapshot commands' errors, without a VM.
func TestSnapshotCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	store := filepath.Join(dir, "vm.store")
	if err := vmm.CreateStoreDisk(store, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"restore"}, exitUsage, "Usage: vmm restore"},
		{[]string{"restore", "vm.store"}, exitUsage, "want STORE@NAME"},
		{[]string{"restore", store + "@a/b"}, exitUsage, "not allowed"},
		{[]string{"restore", filepath.Join(dir, "none.store") + "@warm"}, exitNotStart, "no such file"},
		{[]string{"snapshot", "warm"}, exitUsage, "Usage: vmm snapshot"},
		{[]string{"snapshot", "--api", filepath.Join(dir, "no.sock"), "warm"}, 1, "no VM answers"},
		{[]string{"snapshot", "--api", filepath.Join(dir, "no.sock"), ".x"}, exitUsage, "must not start with '.'"},
		{[]string{"pause"}, exitUsage, "Usage: vmm pause --api SOCKET"},
		{[]string{"stop", "--api", filepath.Join(dir, "no.sock")}, 1, "no VM answers"},
		{[]string{"snapshots"}, exitUsage, "Usage: vmm snapshots STORE"},
		{[]string{"snapshots", filepath.Join(dir, "none.store")}, 1, "no such file"},
		{[]string{"ps", "x"}, exitUsage, "Usage: vmm ps"},
		{[]string{"restore", "--clone", store, store + "@warm"}, exitUsage, "the file exists"},
		{[]string{"restore", "--net", "user,hostfwd=tcp:1.2.3.4:x-:80", store + "@warm"}, exitUsage, "--net: hostfwd="},
		{[]string{"restore", "--net", "slirp", store + "@warm"}, exitUsage, "want user"},
	} {
		var stdout, stderr bytes.Buffer
		if st := Main(c.args, nil, &stdout, &stderr); st != c.status || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("vmm %v: status %d, stderr %q; want %d and %q", c.args, st, stderr.String(), c.status, c.stderr)
		}
	}
	// vmm snapshots lists a snapshot, and one of another version as
	// unusable.
	dev, err := filedev.Open(store, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *objstore.Tx) error {
		return snapshot.Write(tx, &snapshot.Contents{Meta: snapshot.Meta{Name: "warm"}, Memory: make([]byte, 2<<20), DiskObject: vmm.StoreDiskObject})
	})
	s.Close()
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if st := Main([]string{"snapshots", store}, nil, &stdout, &stderr); st != 0 || !strings.Contains(stdout.String(), "warm") || !strings.Contains(stdout.String(), "2.0 MiB") {
		t.Errorf("vmm snapshots: status %d\n%s%s", st, stdout.String(), stderr.String())
	}
	// A clone store lists its base's snapshots.
	clone := filepath.Join(dir, "c1.store")
	if err := filedev.CreateOverlay(clone, store); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if st := Main([]string{"snapshots", clone}, nil, &stdout, &stderr); st != 0 || !strings.Contains(stdout.String(), "warm") {
		t.Errorf("vmm snapshots of a clone: status %d\n%s%s", st, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if st := Main([]string{"ps"}, nil, &stdout, &stderr); st != 0 || !strings.HasPrefix(stdout.String(), "PID") {
		t.Errorf("vmm ps: status %d, %q", st, stdout.String())
	}
}
