package guest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/snapshot"
	"github.com/amberos/amber/vmm"
)

// Two clones of one snapshot (vmm restore --clone) run at once: both
// continue from the snapshot's count with the disk as of the snapshot,
// then diverge (each guest checks at every step that its log holds
// exactly its own counts, so a write of the other clone showing through
// would be a MISMATCH); they draw different random bytes. A snapshot of
// one clone goes to its clone store, incremental to the base's snapshot,
// and restores with that clone's disk.
// The base store is unchanged, byte for byte, and fsck-clean.
func TestSnapshotClone(t *testing.T) {
	needKVM(t)
	dir, store, last := countingSnapshot(t, 4, "warm")
	base, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}

	clones := []string{filepath.Join(dir, "c1.store"), filepath.Join(dir, "c2.store")}
	var vms []*liveVM
	for i, c := range clones {
		vms = append(vms, startVM(t, "restore", "--timeout", "600s", "--api", filepath.Join(dir, fmt.Sprintf("c%d.sock", i+1)), "--clone", c, store+"@warm"))
	}
	var firsts []countLine
	for i, v := range vms {
		// The clones count to different numbers: their disks diverge.
		got := v.waitCount(t, last+3+3*i)
		if len(got) == 0 || got[0].n != last+1 {
			t.Fatalf("clone %d: counts %+v, want %d first\nstderr:\n%s", i+1, got, last+1, v.stderr.String())
		}
		firsts = append(firsts, got[0])
	}
	// Both run at once; the base cannot be written meanwhile.
	if r := run(t, "restore", "--timeout", "5s", store+"@warm"); r.code == 0 || !strings.Contains(r.stderr, "locked") {
		t.Errorf("restoring the base while its clones run: exit %d, stderr %q; want it refused (locked)", r.code, r.stderr)
	}
	if firsts[0].rand == firsts[1].rand {
		t.Errorf("the two clones drew the same random bytes %s", firsts[0].rand)
	}
	// Clone 1 snapshots into its clone store.
	if r := run(t, "snapshot", "--api", filepath.Join(dir, "c1.sock"), "--stop", "later"); r.code != 0 {
		t.Fatalf("snapshot of clone 1: exit %d\n%s", r.code, r.stderr)
	} else if !strings.Contains(r.stdout, "incremental to warm") {
		// warm is the base's: the clone's snapshot shares its blocks.
		t.Errorf("snapshot of clone 1: %q, want it incremental to warm", r.stdout)
	}
	c1, _ := vms[0].rest(t)
	run(t, "stop", "--api", filepath.Join(dir, "c2.sock"))
	vms[1].rest(t)
	c1Last := c1[len(c1)-1].n
	r := run(t, "snapshots", clones[0])
	if !listed(r.stdout, "later") || !listed(r.stdout, "warm") {
		t.Errorf("vmm snapshots of clone 1: want warm and later\n%s%s", r.stdout, r.stderr)
	}
	if r := run(t, "snapshots", store); listed(r.stdout, "later") {
		t.Errorf("the base lists the clone's snapshot:\n%s", r.stdout)
	}
	// Clone 1's snapshot continues with clone 1's disk (the guest checks
	// its log against its count).
	lv := startVM(t, "restore", "--timeout", "600s", "--api", filepath.Join(dir, "l.sock"), clones[0]+"@later")
	if got := lv.waitCount(t, c1Last+2); len(got) == 0 || got[0].n != c1Last+1 {
		t.Errorf("restore of clone 1's snapshot: %+v, want count %d first\n%s", got, c1Last+1, lv.stderr.String())
	}
	run(t, "stop", "--api", filepath.Join(dir, "l.sock"))
	lv.rest(t)
	for _, c := range append(clones, store) {
		if r := run(t, "store", "fsck", c); r.code != 0 {
			t.Errorf("fsck %s: exit %d\n%s%s", c, r.code, r.stdout, r.stderr)
		}
	}
	after, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base, after) {
		t.Error("the base store changed")
	}
	for i, c := range clones {
		fi, err := os.Stat(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("clone %d: store file %d KiB (base %d KiB)", i+1, fi.Size()>>10, len(base)>>10)
	}
}

// A snapshot of a clone is incremental to the base's snapshot the clone
// was restored from: the clone store gets only the pages the clone
// wrote (the guest wrote 1 MiB of its 64), sharing the rest with the
// base's extents, and the base is never written. A clone restored from
// warm writes its next MiB and is snapshotted twice (later: from its
// private pages, parent warm; later2: from the dirty log, parent later);
// a clone of that clone restored from later is snapshotted too (parent
// later, in its base c1). Each restores to the memory it was taken of:
// the guest's checksum of all 64 MiB after its next write is the one
// the VM printed that was snapshotted. Deleting later through the clone
// keeps later2; warm, the base's, cannot be deleted through the clone.
func TestSnapshotCloneIncremental(t *testing.T) {
	needKVM(t)
	img, err := vmm.OpenImage(image(t, "./testdata/snapdirty"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	dir := t.TempDir()
	store := filepath.Join(dir, "vm.store")
	c1, c2 := filepath.Join(dir, "c1.store"), filepath.Join(dir, "c2.store")
	vm, pw, rw := newWaitingVM(t, img, store, 256<<20)
	s := &snapdirtyVM{t: t, vm: vm, pw: pw, rw: rw, done: make(chan error, 1)}
	go func() { _, err := vm.Run(); s.done <- err }()
	select {
	case <-rw.ready:
	case err := <-s.done:
		t.Fatalf("the guest ended before it was ready: %v\n%s", err, rw.buf.String())
	case <-time.After(300 * time.Second):
		t.Fatal("the guest was not ready within 300s")
	}
	s.snap("warm")
	after1 := s.dirty(1)
	s.end()
	base, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}

	// The clone: restored from warm, it writes the MiB the original
	// wrote after warm, then the next ones.
	s = restoreSnapdirty(t, vmm.RestoreConfig{Store: store, Snapshot: "warm", Clone: c1, Image: img})
	if l := s.dirty(1); l != after1 {
		t.Errorf("the clone of warm printed %q, want %q (the original's after warm)", l, after1)
	}
	used0 := allocated(t, c1)
	later := s.snap("later")
	used1 := allocated(t, c1)
	after2 := s.dirty(2)
	later2 := s.snap("later2")
	after3 := s.dirty(3)
	s.end()
	t.Logf("the clone store's file: %d KiB allocated before later, %d KiB after (the base's is %d KiB)", used0>>10, used1>>10, len(base)>>10)
	// What the clone's file gained is what later stored and the store's
	// metadata, not a copy of warm's 64 MiB.
	if grew := used1 - used0; grew > later.MemStored+4<<20 || grew > 12<<20 {
		t.Errorf("the clone store grew by %d KiB for snapshot later, which stored %d KiB; want at most 4 MiB more, and under 12 MiB (warm's memory is 64 MiB)", grew>>10, later.MemStored>>10)
	}

	// A clone of the clone first: a commit to c1 (a restore on it)
	// would make c2 unusable.
	s = restoreSnapdirty(t, vmm.RestoreConfig{Store: c1, Snapshot: "later", Clone: c2, Image: img})
	if l := s.dirty(2); l != after2 {
		t.Errorf("the clone of c1's later printed %q, want %q", l, after2)
	}
	c2later := s.snap("c2later")
	if l := s.dirty(3); l != after3 {
		t.Errorf("the clone of c1's later printed %q after its snapshot, want %q", l, after3)
	}
	s.end()
	for _, c := range []struct {
		m      snapshot.Meta
		parent string
	}{{later, "warm"}, {later2, "later"}, {c2later, "later"}} {
		m := c.m
		t.Logf("%s: parent %s, %d KiB stored, %d KiB dirty", m.Name, m.Parent, m.MemStored>>10, m.MemDirty>>10)
		if m.Parent != c.parent || m.MemStored < 1<<20 || m.MemStored > 2*m.MemDirty || m.MemStored > 8<<20 {
			t.Errorf("snapshot %s: parent %q, %d bytes stored, %d dirty; want incremental to %s, the guest's 1 MiB and at most 2x the dirty bytes, under 8 MiB", m.Name, m.Parent, m.MemStored, m.MemDirty, c.parent)
		}
	}

	restore := func(rc vmm.RestoreConfig, want string) {
		t.Helper()
		var out bytes.Buffer
		rc.Image, rc.Stdin, rc.Stdout = img, strings.NewReader("x\n"), &out
		vm, err := vmm.Restore(rc)
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		status, err := vm.Run()
		if err != nil || status != 0 || out.String() != want {
			t.Errorf("restore %s@%s: status %d, %v, output %q; want %q", rc.Store, rc.Snapshot, status, err, out.String(), want)
		}
	}
	fsck := func(stores ...string) {
		t.Helper()
		for _, s := range stores {
			if r := run(t, "store", "fsck", s); r.code != 0 {
				t.Errorf("fsck %s: exit %d\n%s%s", s, r.code, r.stdout, r.stderr)
			}
		}
	}
	restore(vmm.RestoreConfig{Store: c2, Snapshot: "c2later"}, after3)
	fsck(c2)
	restore(vmm.RestoreConfig{Store: c1, Snapshot: "later"}, after2)
	restore(vmm.RestoreConfig{Store: c1, Snapshot: "later2"}, after3)
	fsck(c1, store)

	if r := run(t, "snapshots", "rm", c1+"@warm"); r.code == 0 {
		t.Errorf("deleting the base's warm through the clone: exit 0\n%s", r.stdout)
	}
	if r := run(t, "snapshots", "rm", c1+"@later"); r.code != 0 {
		t.Errorf("deleting later in the clone: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	restore(vmm.RestoreConfig{Store: c1, Snapshot: "later2"}, after3)
	fsck(c1, store)
	after, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base, after) {
		t.Error("the base store changed")
	}
}

// snapdirtyVM is a running testdata/snapdirty fed lines through pw.
type snapdirtyVM struct {
	t    *testing.T
	vm   *vmm.VM
	pw   *io.PipeWriter
	rw   *readyWriter
	done chan error
}

// restoreSnapdirty restores a snapshot of snapdirty and runs it.
func restoreSnapdirty(t *testing.T, rc vmm.RestoreConfig) *snapdirtyVM {
	t.Helper()
	pr, pw := io.Pipe()
	rw := &readyWriter{ready: make(chan struct{})}
	rc.Stdin, rc.Stdout = pr, rw
	vm, err := vmm.Restore(rc)
	if err != nil {
		t.Fatal(err)
	}
	s := &snapdirtyVM{t: t, vm: vm, pw: pw, rw: rw, done: make(chan error, 1)}
	go func() { _, err := vm.Run(); s.done <- err }()
	return s
}

// dirty has the guest write its n-th MiB: the line it printed.
func (s *snapdirtyVM) dirty(n int) string { s.t.Helper(); return dirtyLine(s.t, s.pw, s.rw, n) }

func (s *snapdirtyVM) snap(name string) snapshot.Meta {
	s.t.Helper()
	res, err := s.vm.Snapshot(name, false)
	if err != nil {
		s.t.Fatal(err)
	}
	return res.Meta
}

// end stops the VM and releases it (and its store).
func (s *snapdirtyVM) end() {
	s.vm.Stop()
	s.pw.Close()
	<-s.done
	s.vm.Close()
}

// allocated returns the bytes of disk a (sparse) file takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
