package guest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two clones of one snapshot (vmm restore --clone) run at once: both
// continue from the snapshot's count with the disk as of the snapshot,
// then diverge (each guest checks at every step that its log holds
// exactly its own counts, so a write of the other clone showing through
// would be a MISMATCH); they draw different random bytes. A snapshot of
// one clone goes to its clone store and restores with that clone's disk.
// The base store is unchanged, byte for byte, and fsck-clean.
func TestSnapshotClone(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/snapcount")
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	store := filepath.Join(dir, "vm.store")
	if r := run(t, "store", "create", store, "--disk-size", "16M"); r.code != 0 {
		t.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
	}
	sock := filepath.Join(dir, "vm.sock")
	vm := startVM(t, "run", "--timeout", "600s", "--disk", store, "--api", sock, img, "--", "1000000")
	vm.waitCount(t, 4)
	if r := run(t, "snapshot", "--api", sock, "--stop", "warm"); r.code != 0 {
		t.Fatalf("vmm snapshot: exit %d\n%s", r.code, r.stderr)
	}
	cs, _ := vm.rest(t)
	last := cs[len(cs)-1].n
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
