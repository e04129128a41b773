package guest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/snapshot"
	"github.com/amberos/amber/vmm"
)

// liveVM is a vmm process whose stdout lines arrive on lines.
type liveVM struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer
	all    []string
}

func startVM(t *testing.T, args ...string) *liveVM {
	t.Helper()
	return startVMInput(t, nil, args...)
}

// startVMInput is startVM with the process's stdin read from in.
func startVMInput(t *testing.T, in io.Reader, args ...string) *liveVM {
	t.Helper()
	v := &liveVM{cmd: exec.Command(vmmBin, args...), lines: make(chan string, 1000)}
	v.cmd.Stdin = in
	v.cmd.Stderr = &v.stderr
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			v.lines <- sc.Text()
		}
		close(v.lines)
	}()
	t.Cleanup(func() { v.cmd.Process.Kill(); v.cmd.Wait() })
	return v
}

// countLine is one line of testdata/snapcount.
type countLine struct {
	n          int
	mono, wall int64
	rand       string
}

func parseCount(s string) (countLine, bool) {
	var c countLine
	_, err := fmt.Sscanf(s, "count %d mono %d wall %d rand %s", &c.n, &c.mono, &c.wall, &c.rand)
	return c, err == nil
}

// waitCount reads lines until count n (or the end), returning the counts.
func (v *liveVM) waitCount(t *testing.T, n int) []countLine {
	t.Helper()
	var cs []countLine
	timeout := time.After(240 * time.Second)
	for {
		select {
		case l, ok := <-v.lines:
			if !ok {
				return cs
			}
			v.all = append(v.all, l)
			if strings.HasPrefix(l, "MISMATCH") {
				t.Errorf("guest: %s", l)
			}
			if c, ok := parseCount(l); ok {
				cs = append(cs, c)
				if c.n >= n {
					return cs
				}
			}
		case <-timeout:
			t.Fatalf("no count %d within 240s; output:\n%s\nstderr:\n%s", n, strings.Join(v.all, "\n"), v.stderr.String())
		}
	}
}

// rest drains the remaining lines and waits for the process: its status.
func (v *liveVM) rest(t *testing.T) ([]countLine, int) {
	t.Helper()
	cs := v.waitCount(t, 1<<62)
	err := v.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return cs, ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cs, 0
}

// A guest counting in memory and appending to a file on /data is
// snapshotted mid-run and stopped, then restored twice (one after the
// other): each restored guest continues from the snapshot's count with
// the disk as of the snapshot (the guest checks its log against its
// count at every step), its wall clock is the host's, its monotonic clock
// does not count the time the VM was stopped, and the two restored
// guests draw different random bytes. Then a snapshot whose format
// version is not this vmm's is refused.
func TestSnapshotRestore(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/snapcount")
	dir, store := storeRunDir(t)
	sock := filepath.Join(dir, "vm.sock")
	vm := startVM(t, "run", "--timeout", "600s", "--disk", store, "--api", sock, img, "--", "1000000")
	before := vm.waitCount(t, 5)
	if r := run(t, "ps"); r.code != 0 || !strings.Contains(r.stdout, sock) {
		t.Errorf("vmm ps: exit %d, stdout %q, stderr %q; want the VM's socket listed", r.code, r.stdout, r.stderr)
	}
	r := run(t, "snapshot", "--api", sock, "--stop", "warm")
	if r.code != 0 || !strings.Contains(r.stdout, "snapshot warm: memory 128.0 MiB") {
		_, st := vm.rest(t)
		t.Fatalf("vmm snapshot: exit %d\nstdout %s\nstderr %s\nthe VM: exit %d, stderr:\n%s", r.code, r.stdout, r.stderr, st, vm.stderr.String())
	}
	t.Logf("vmm snapshot: %s", strings.TrimSpace(r.stdout))
	after, status := vm.rest(t)
	stopped := time.Now()
	if status != 130 {
		t.Errorf("vmm run after snapshot --stop: exit %d, want 130 (stopped)\nstderr: %s", status, vm.stderr.String())
	}
	counts := append(before, after...)
	last := counts[len(counts)-1]
	t.Logf("the original guest counted to %d", last.n)

	r = run(t, "snapshots", store)
	if r.code != 0 || !strings.Contains(r.stdout, "warm") || !strings.Contains(r.stdout, "128.0 MiB") {
		t.Errorf("vmm snapshots: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Errorf("store fsck after the snapshot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The host's clock moves on while the VM is stopped.
	time.Sleep(3 * time.Second)

	var firstRand []string
	for i := range 2 {
		sock2 := filepath.Join(dir, fmt.Sprintf("r%d.sock", i))
		restoreStart := time.Now()
		rv := startVM(t, "restore", "--timeout", "600s", "--api", sock2, store+"@warm")
		cs := rv.waitCount(t, last.n+3)
		if r := run(t, "stop", "--api", sock2); r.code != 0 {
			t.Errorf("vmm stop: exit %d, %s", r.code, r.stderr)
		}
		more, status := rv.rest(t)
		cs = append(cs, more...)
		if status != 130 {
			t.Errorf("restore %d: exit %d after vmm stop, want 130\nstderr: %s", i, status, rv.stderr.String())
		}
		if len(cs) == 0 {
			t.Fatalf("restore %d printed no count; output:\n%s\nstderr:\n%s", i, strings.Join(rv.all, "\n"), rv.stderr.String())
		}
		first := cs[0]
		if first.n != last.n+1 {
			t.Errorf("restore %d: first count %d, want %d (continuing from the snapshot's)\n%s", i, first.n, last.n+1, strings.Join(rv.all, "\n"))
		}
		if first.wall < restoreStart.UnixMilli()-50 {
			t.Errorf("restore %d: guest wall clock %d ms, but the restore started at host time %d ms: not the host's clock", i, first.wall, restoreStart.UnixMilli())
		}
		downtime := restoreStart.Sub(stopped).Milliseconds()
		if first.mono < last.mono || first.mono-last.mono >= downtime {
			t.Errorf("restore %d: monotonic clock %d ms after %d ms at the snapshot; the VM was stopped for %d ms, which it must not count", i, first.mono, last.mono, downtime)
		}
		t.Logf("restore %d: count %d -> %d; monotonic %d -> %d ms over %d ms stopped; guest wall - host wall at restore: %d ms", i, last.n, first.n, last.mono, first.mono, downtime, first.wall-restoreStart.UnixMilli())
		firstRand = append(firstRand, first.rand)
	}
	if firstRand[0] == firstRand[1] {
		t.Errorf("the two restored guests drew the same random bytes %s", firstRand[0])
	}
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Errorf("store fsck after the restores: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A snapshot of another format version is refused, not misread.
	setSnapshotFormat(t, store, "warm", 99)
	r = run(t, "restore", store+"@warm")
	if r.code != 126 || !strings.Contains(r.stderr, "format version 99") {
		t.Errorf("restoring a version-99 snapshot: exit %d, stderr %q; want 126 and the version named", r.code, r.stderr)
	}
	r = run(t, "restore", store+"@nosuch")
	if r.code != 126 || !strings.Contains(r.stderr, "no such snapshot") {
		t.Errorf("restoring a missing snapshot: exit %d, stderr %q", r.code, r.stderr)
	}
}

// setSnapshotFormat rewrites a snapshot's format version in its meta.
func setSnapshotFormat(t *testing.T, store, name string, v int) {
	t.Helper()
	dev, err := filedev.Open(store, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *objstore.Tx) error {
		obj := snapshot.Object(name, snapshot.ObjMeta)
		o, err := tx.Open(obj)
		if err != nil {
			return err
		}
		b := make([]byte, o.Size())
		if _, err := o.ReadAt(b, 0); err != nil && err != io.EOF {
			return err
		}
		b = bytes.Replace(b, []byte(`"format": `+strconv.Itoa(snapshot.Version)), []byte(`"format": `+strconv.Itoa(v)), 1)
		if err := tx.Delete(obj); err != nil {
			return err
		}
		o, err = tx.Create(obj)
		if err != nil {
			return err
		}
		_, err = o.WriteAt(b, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// listed reports whether vmm snapshots' output has a line for name.
func listed(out, name string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// guest.Snapshot, "initialise once, serve many": the call returns in the
// VM that made it (false) once the snapshot is committed, and again
// (true) in a VM restored from it, with the state built before the call;
// a second snapshot of the same name is refused in the guest.
func TestGuestSnapshot(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/snaponce")
	_, store := storeRunDir(t)
	r := run(t, "run", "--timeout", "300s", "--disk", store, img)
	if r.code != 0 || !strings.Contains(r.stdout, "restored false state 500500\n") || !strings.Contains(r.stdout, "again: true") {
		t.Fatalf("vmm run: exit %d; want the call to return false, then a second snapshot refused as existing\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "snapshots", store); r.code != 0 || !strings.Contains(r.stdout, "ready") {
		t.Errorf("vmm snapshots: exit %d; want snapshot ready listed\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i := range 2 {
		r = run(t, "restore", "--timeout", "300s", store+"@ready")
		if r.code != 0 || r.stdout != "restored true state 500500\n" {
			t.Errorf("restore %d: exit %d; want the call to return true, once\nstdout:\n%s\nstderr:\n%s", i, r.code, r.stdout, r.stderr)
		}
	}
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Errorf("store fsck: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A VM without a store for a disk cannot be snapshotted: the guest's
// call fails with an error saying why (under TCG, that it is not on
// Amber's VMM), and the program goes on.
func TestGuestSnapshotRefused(t *testing.T) {
	r := runImage(t, "./testdata/snaponce")
	if r.code != 1 || !strings.Contains(r.stdout, "snapshot error: guest.Snapshot \"ready\": ") ||
		!(strings.Contains(r.stdout, "cannot be snapshotted") || strings.Contains(r.stdout, "not running on Amber")) {
		t.Fatalf("exit %d; want 1 and the call's error\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// Incremental snapshots: a VM's first snapshot is full, the next holds
// only the pages written since (the guest wrote 1 MiB of its 64), sharing
// the rest with its parent; each restores to the memory it was taken of
// (the guest's checksum of all 64 MiB after its next write is the one the
// original VM printed), also after its parent is deleted. A restored VM's
// snapshots are incremental too: the first to the snapshot it was
// restored from (its private pages; no dirty log yet), the next to that
// one (the dirty log), and both restore to their memory.
func TestSnapshotIncremental(t *testing.T) {
	needKVM(t)
	img, err := vmm.OpenImage(image(t, "./testdata/snapdirty"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	store := filepath.Join(t.TempDir(), "vm.store")
	vm, pw, rw := newWaitingVM(t, img, store, 256<<20)
	done := make(chan error, 1)
	go func() { _, err := vm.Run(); done <- err }()
	select {
	case <-rw.ready:
	case err := <-done:
		t.Fatalf("the guest ended before it was ready: %v\n%s", err, rw.buf.String())
	case <-time.After(300 * time.Second):
		t.Fatal("the guest was not ready within 300s")
	}
	dirty := func(pw io.Writer, rw *readyWriter, n int) string { t.Helper(); return dirtyLine(t, pw, rw, n) }
	line := func(n int) string { t.Helper(); return dirty(pw, rw, n) }
	snapOf := func(vm *vmm.VM, name string) *vmm.SnapshotResult {
		t.Helper()
		res, err := vm.Snapshot(name, false)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	snap := func(name string) *vmm.SnapshotResult { t.Helper(); return snapOf(vm, name) }
	s1 := snap("s1")
	after1 := line(1)
	s2 := snap("s2")
	after2 := line(2)
	vm.Stop()
	pw.Close()
	<-done
	vm.Close()
	m1, m2 := s1.Meta, s2.Meta
	t.Logf("full: %d KiB stored; incremental: %d KiB stored, %d KiB dirty", m1.MemStored>>10, m2.MemStored>>10, m2.MemDirty>>10)
	if m1.Parent != "" || m1.MemStored < 64<<20 {
		t.Errorf("first snapshot: parent %q, %d bytes stored; want a full one of at least the guest's 64 MiB", m1.Parent, m1.MemStored)
	}
	if m2.Parent != "s1" || m2.MemStored < 1<<20 || m2.MemStored > 2*m2.MemDirty || m2.MemStored > 8<<20 {
		t.Errorf("second snapshot: parent %q, %d bytes stored, %d dirty; want incremental to s1, the guest's 1 MiB and at most 2x the dirty bytes, under 8 MiB", m2.Parent, m2.MemStored, m2.MemDirty)
	}
	restore := func(name, want string) {
		t.Helper()
		var out bytes.Buffer
		vm, err := vmm.Restore(vmm.RestoreConfig{Store: store, Snapshot: name, Image: img, Stdin: strings.NewReader("x\n"), Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		status, err := vm.Run()
		if err != nil || status != 0 || out.String() != want {
			t.Errorf("restore %s: status %d, %v, output %q; want %q", name, status, err, out.String(), want)
		}
	}
	restore("s2", after2)
	restore("s1", after1)

	// A restored VM's snapshots.
	pr3, pw3 := io.Pipe()
	rw3 := &readyWriter{ready: make(chan struct{})}
	rv, err := vmm.Restore(vmm.RestoreConfig{Store: store, Snapshot: "s2", Image: img, Stdin: pr3, Stdout: rw3})
	if err != nil {
		t.Fatal(err)
	}
	rdone := make(chan error, 1)
	go func() { _, err := rv.Run(); rdone <- err }()
	if l := dirty(pw3, rw3, 2); l != after2 {
		t.Errorf("the VM restored from s2 printed %q, want %q", l, after2)
	}
	s3 := snapOf(rv, "s3")
	after3 := dirty(pw3, rw3, 3)
	s4 := snapOf(rv, "s4")
	after4 := dirty(pw3, rw3, 4)
	rv.Stop()
	pw3.Close()
	<-rdone
	rv.Close()
	for _, m := range []snapshot.Meta{s3.Meta, s4.Meta} {
		t.Logf("%s of the restored VM: parent %s, %d KiB stored, %d KiB dirty", m.Name, m.Parent, m.MemStored>>10, m.MemDirty>>10)
	}
	if m := s3.Meta; m.Parent != "s2" || m.MemStored < 1<<20 || m.MemStored > 8<<20 {
		t.Errorf("first snapshot of a VM restored from s2: parent %q, %d bytes stored; want incremental to s2, the guest's 1 MiB and under 8 MiB", m.Parent, m.MemStored)
	}
	if m := s4.Meta; m.Parent != "s3" || m.MemStored < 1<<20 || m.MemStored > 8<<20 {
		t.Errorf("second snapshot of the restored VM: parent %q, %d bytes stored; want incremental to s3, the guest's 1 MiB and under 8 MiB", m.Parent, m.MemStored)
	}
	restore("s3", after3)
	restore("s4", after4)

	// The parent goes; its blocks stay while the child shares them.
	dev, err := filedev.Open(store, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *objstore.Tx) error { return snapshot.Delete(tx, "s1") })
	s.Close()
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	restore("s2", after2)
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Errorf("store fsck: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// dirtyLine has testdata/snapdirty write its next MiB (its n-th) and
// returns the line it printed, with the checksum of all its memory.
func dirtyLine(t *testing.T, pw io.Writer, rw *readyWriter, n int) string {
	t.Helper()
	pw.Write([]byte("x\n"))
	want := "dirtied " + strconv.Itoa(n) + " sum "
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		rw.mu.Lock()
		out := rw.buf.String()
		rw.mu.Unlock()
		if i := strings.Index(out, want); i >= 0 {
			if j := strings.IndexByte(out[i:], '\n'); j >= 0 {
				return out[i : i+j+1]
			}
		}
	}
	t.Fatalf("no %q within 120s:\n%s", want, rw.buf.String())
	return ""
}

// Restoring a snapshot taken with 256 MiB and with 2 GiB of guest
// memory, through the same code: each restored guest reads its line and
// ends as the original would have, and its memory is mapped, not read:
// the snapshot stores only the pages the guest touched, and after the
// restored guest ran, the guest RAM resident in the VMM is a small part
// of 256 MiB, let alone 2 GiB.
//
// Each is restored a second time into a VM prepared ahead (vmm.Prepare),
// after a prepared VM of another size was refused.
func TestSnapshotSizes(t *testing.T) {
	needKVM(t)
	img, err := vmm.OpenImage(image(t, "./testdata/snapwait"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, mib := range []uint64{256, 2048} {
		store := filepath.Join(t.TempDir(), "vm.store")
		vm, pw, rw := newWaitingVM(t, img, store, mib<<20)
		done := make(chan error, 1)
		go func() { _, err := vm.Run(); done <- err }()
		select {
		case <-rw.ready:
		case err := <-done:
			t.Fatalf("%d MiB: the guest ended before it was ready: %v\n%s", mib, err, rw.buf.String())
		case <-time.After(240 * time.Second):
			t.Fatalf("%d MiB: the guest was not ready within 240s", mib)
		}
		time.Sleep(100 * time.Millisecond) // into its read
		res, err := vm.Snapshot("s", true)
		<-done
		vm.Close()
		pw.Close()
		if err != nil {
			t.Fatalf("%d MiB: %v", mib, err)
		}
		if m := res.Meta; m.MemBytes != int64(mib<<20) || m.MemStored <= 0 || m.MemStored > 32<<20 {
			t.Errorf("%d MiB: snapshot of %d bytes of memory, %d stored; want %d, and only the few MiB the guest touched stored", mib, m.MemBytes, m.MemStored, mib<<20)
		}

		var out bytes.Buffer
		rv, err := vmm.Restore(vmm.RestoreConfig{Store: store, Snapshot: "s", Image: img, Stdin: strings.NewReader("go\n"), Stdout: &out})
		if err != nil {
			t.Fatalf("%d MiB: %v", mib, err)
		}
		status, err := rv.Run()
		resident, rerr := rv.GuestResident()
		rv.Close()
		if err != nil || status != 0 || out.String() != "got go\n" {
			t.Errorf("%d MiB: restore: status %d, %v, output %q; want \"got go\\n\" only", mib, status, err, out.String())
		}
		if rerr != nil || resident > 32<<20 {
			t.Errorf("%d MiB: guest RAM resident after the restored guest ran: %d bytes (%v); want only the pages it touched", mib, resident, rerr)
		}
		t.Logf("%d MiB: %d KiB stored, restored guest's resident RAM %d KiB", mib, res.Meta.MemStored>>10, resident>>10)

		// Into a VM prepared ahead (vmm.Prepare: a pool's VM), the same;
		// one of another size is refused, and released.
		other, err := vmm.Prepare((mib + 2) << 20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vmm.Restore(vmm.RestoreConfig{Store: store, Snapshot: "s", Image: img, Prepared: other}); err == nil || !strings.Contains(err.Error(), "prepared VM has") {
			t.Errorf("%d MiB: restore into a VM prepared with 2 MiB more: %v; want it refused", mib, err)
		}
		// Refused or failing early, Restore releases what it was given.
		early, err := vmm.Prepare(mib << 20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vmm.Restore(vmm.RestoreConfig{Store: store + ".missing", Snapshot: "s", Image: img, Prepared: early}); err == nil {
			t.Errorf("%d MiB: restore from a missing store succeeded", mib)
		}
		if other.Memory() != 0 || early.Memory() != 0 {
			t.Errorf("%d MiB: prepared VMs a failed restore was given are not released (%d, %d bytes of memory left)", mib, other.Memory(), early.Memory())
		}
		p, err := vmm.Prepare(mib << 20)
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		rv, err = vmm.Restore(vmm.RestoreConfig{Store: store, Snapshot: "s", Image: img, Stdin: strings.NewReader("again\n"), Stdout: &out, Prepared: p})
		if err != nil {
			t.Fatalf("%d MiB: restore into a prepared VM: %v", mib, err)
		}
		status, err = rv.Run()
		rv.Close()
		if err != nil || status != 0 || out.String() != "got again\n" {
			t.Errorf("%d MiB: restore into a prepared VM: status %d, %v, output %q; want \"got again\\n\" only", mib, status, err, out.String())
		}
	}
}

// newWaitingVM makes a 16 MiB store disk at store and a VM of img with
// memBytes of memory on it (the data disk off), its stdin the returned
// pipe and its stdout rw, which signals the guest's "ready": the set-up
// of the snapshot tests whose guest waits on stdin between steps.
func newWaitingVM(t testing.TB, img *vmm.Image, store string, memBytes uint64) (*vmm.VM, *io.PipeWriter, *readyWriter) {
	t.Helper()
	if err := vmm.CreateStoreDisk(store, 16<<20); err != nil {
		t.Fatal(err)
	}
	disk, err := vmm.OpenStoreDisk(store, false)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	rw := &readyWriter{ready: make(chan struct{})}
	vm, err := vmm.New(vmm.Config{Image: img, Memory: memBytes, Cmdline: []string{"amber.data=off"}, Stdin: pr, Stdout: rw, Disks: []vmm.Disk{{Backend: disk}}})
	if err != nil {
		t.Fatal(err)
	}
	return vm, pw, rw
}

// storeRunDir makes a new temporary directory with a store (16 MiB disk)
// in it, vm.store, and makes the directory the run directory
// (XDG_RUNTIME_DIR) of the VMs the test starts, so that vmm ps sees only
// them.
func storeRunDir(t testing.TB) (dir, store string) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	store = filepath.Join(dir, "vm.store")
	if r := run(t, "store", "create", store, "--disk-size", "16M"); r.code != 0 {
		t.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
	}
	return dir, store
}

// countingSnapshot runs testdata/snapcount on a new store (storeRunDir)
// with its control API on dir/vm.sock until it has counted to n, and
// snapshots it as name with --stop: the directory, the store and the
// last count the VM printed.
func countingSnapshot(t *testing.T, n int, name string) (dir, store string, last int) {
	t.Helper()
	img := image(t, "./testdata/snapcount")
	dir, store = storeRunDir(t)
	sock := filepath.Join(dir, "vm.sock")
	vm := startVM(t, "run", "--timeout", "600s", "--disk", store, "--api", sock, img, "--", "1000000")
	vm.waitCount(t, n)
	if r := run(t, "snapshot", "--api", sock, "--stop", name); r.code != 0 {
		t.Fatalf("vmm snapshot %s: exit %d\n%s", name, r.code, r.stderr)
	}
	cs, _ := vm.rest(t)
	return dir, store, cs[len(cs)-1].n
}
