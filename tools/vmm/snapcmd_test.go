package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/snapshot"
	"github.com/amberos/amber/vmm"
	"github.com/amberos/amber/vmm/api"
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

// writeSnaps adds snapshots to a store file: each name, incremental to
// the one before it when inc.
func writeSnaps(t *testing.T, path string, inc bool, names ...string) {
	t.Helper()
	dev, err := filedev.Open(path, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	parent := ""
	for _, n := range names {
		mem := make([]byte, 2<<20)
		copy(mem, n)
		c := &snapshot.Contents{Meta: snapshot.Meta{Name: n, Parent: parent}, Memory: mem, DiskObject: vmm.StoreDiskObject}
		if parent != "" {
			c.Dirty = make([]uint64, len(mem)/snapshot.PageSize/64)
			c.Dirty[0] = 1
		}
		if err := s.Update(func(tx *objstore.Tx) error { return snapshot.Write(tx, c) }); err != nil {
			t.Fatal(err)
		}
		if inc {
			parent = n
		}
	}
}

// vmm snapshots rm: several in one go, all or none; a missing name named;
// the parent of an incremental snapshot deleted without loss (the child
// lists its parent as deleted); a base's snapshot refused through a
// clone, the clone's own deleted; a store in use refused.
func TestSnapshotsRm(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "vm.store")
	if err := vmm.CreateStoreDisk(store, 1<<20); err != nil {
		t.Fatal(err)
	}
	writeSnaps(t, store, true, "a", "b")
	writeSnaps(t, store, false, "c", "d")
	vmmCmd := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		st := Main(args, nil, &stdout, &stderr)
		return st, stdout.String(), stderr.String()
	}
	list := func(path string) string {
		t.Helper()
		st, out, errs := vmmCmd("snapshots", path)
		if st != 0 {
			t.Fatalf("vmm snapshots %s: %d %s", path, st, errs)
		}
		return out
	}
	for _, c := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"snapshots", "rm"}, exitUsage, "Usage: vmm snapshots rm"},
		{[]string{"snapshots", "rm", "-h"}, 0, "Usage: vmm snapshots rm"},
		{[]string{"snapshots", "rm", "vm.store"}, exitUsage, "want STORE@NAME"},
		{[]string{"snapshots", "rm", store + "@.x"}, exitUsage, "must not start"},
		{[]string{"snapshots", "rm", store + "@c", store + "@nosuch"}, 1, `"nosuch": no such snapshot`},
		{[]string{"snapshots", "rm", filepath.Join(dir, "none.store") + "@c"}, 1, "no such file"},
	} {
		if st, _, errs := vmmCmd(c.args...); st != c.status || !strings.Contains(errs, c.stderr) {
			t.Errorf("vmm %v: status %d, stderr %q; want %d and %q", c.args, st, errs, c.status, c.stderr)
		}
	}
	if !listed(list(store), "c") {
		t.Fatal("c deleted by a vmm snapshots rm that failed")
	}
	st, out, errs := vmmCmd("snapshots", "rm", store+"@a", store+"@c")
	if st != 0 || !strings.Contains(out, "deleted "+store+"@a") || !strings.Contains(out, store+"@b was incremental") {
		t.Fatalf("rm a c: %d\n%s%s", st, out, errs)
	}
	l := list(store)
	if listed(l, "a") || listed(l, "c") || !listed(l, "b") || !listed(l, "d") || !strings.Contains(l, "a (deleted)") {
		t.Errorf("after rm a c:\n%s", l)
	}
	checkMem := func(path, name string) {
		t.Helper()
		dev, err := filedev.Open(path, filedev.Options{ReadOnly: true, Shared: true})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		s, err := objstore.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.View(func(tx *objstore.Tx) error {
			o, err := tx.Open(snapshot.Object(name, snapshot.ObjMem))
			if err != nil {
				return err
			}
			b := make([]byte, 1)
			if _, err := o.ReadAt(b, 0); err != nil || b[0] != name[0] {
				t.Errorf("%s's memory: %q, %v", name, b, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if r := s.Fsck(); !r.OK() {
			t.Errorf("fsck %s: %v", path, r)
		}
	}
	checkMem(store, "b")
	// A clone: the base's snapshots are refused, its own deleted.
	clone := filepath.Join(dir, "c1.store")
	if err := filedev.CreateOverlay(clone, store); err != nil {
		t.Fatal(err)
	}
	writeSnaps(t, clone, false, "own")
	if st, _, errs := vmmCmd("snapshots", "rm", clone+"@own", clone+"@b"); st != 1 || !strings.Contains(errs, "cannot be deleted through the clone") {
		t.Errorf("rm of a base's snapshot through the clone: %d %q", st, errs)
	}
	if !listed(list(clone), "own") || !listed(list(clone), "b") {
		t.Error("a refused rm deleted something")
	}
	if st, out, errs := vmmCmd("snapshots", "rm", clone+"@own"); st != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("rm of the clone's own snapshot: %d %s%s", st, out, errs)
	}
	if l := list(clone); listed(l, "own") || !listed(l, "b") {
		t.Errorf("the clone after rm own:\n%s", l)
	}
	checkMem(clone, "b")
	// In use: a writer holds it (as vmm run --disk does), or a clone
	// reads it.
	dev, err := filedev.Open(clone, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{clone, store} {
		if st, _, errs := vmmCmd("snapshots", "rm", p+"@b"); st != 1 || !strings.Contains(errs, "in use") {
			t.Errorf("rm in %s while the clone is open: %d %q", p, st, errs)
		}
	}
	dev.Close()
	if !listed(list(store), "b") {
		t.Error("b deleted while in use")
	}
}

// listed reports whether vmm snapshots' output has a row for name.
func listed(out, name string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

type idleVM struct{}

func (idleVM) Pause() error                       { return nil }
func (idleVM) Resume() error                      { return nil }
func (idleVM) Stop() error                        { return nil }
func (idleVM) Metrics() any                       { return nil }
func (idleVM) Snapshot(string, bool) (any, error) { return nil, nil }

// vmm ps shows a VM's forwards as they listen (a clone's chosen ports).
func TestPsForwards(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	ns, err := vmm.ParseNetSpec("user,hostfwd=tcp:127.0.0.1:41234-:80")
	if err != nil {
		t.Fatal(err)
	}
	fw := forwardStrings(&ns)
	if len(fw) != 1 || fw[0] != "tcp:127.0.0.1:41234-:80" || forwardStrings(nil) != nil {
		t.Fatalf("forwardStrings = %q", fw)
	}
	srv, err := api.Listen(filepath.Join(t.TempDir(), "vm.sock"), idleVM{}, api.Info{PID: os.Getpid(), Image: "app.img", Forwards: fw})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if st := Main([]string{"ps"}, nil, &stdout, &stderr); st != 0 || !strings.Contains(stdout.String(), "PORTS") || !strings.Contains(stdout.String(), "tcp:127.0.0.1:41234-:80") {
		t.Errorf("vmm ps: %d\n%s%s", st, stdout.String(), stderr.String())
	}
}
