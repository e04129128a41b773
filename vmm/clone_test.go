package vmm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	snapfmt "github.com/amberos/amber/snapshot"
)

// TestCloneMapping: a clone store made for a restore maps the snapshot's
// memory from its base's file where it shares the blocks and from its
// own where it changed them; guest writes change neither file. Without
// KVM: the mapping is the restore's, the VM is not created.
func TestCloneMapping(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "vm.store")
	if err := CreateStoreDisk(base, 1<<20); err != nil {
		t.Fatal(err)
	}
	const memBytes = 2 << 20
	mem := make([]byte, memBytes)
	for p := 0; p < memBytes/4096; p++ {
		if p%3 != 0 { // every third page a hole
			copy(mem[p*4096:], bytes.Repeat([]byte{byte(p)}, 4096))
		}
	}
	withStore := func(path string, fn func(tx *objstore.Tx) error) {
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
		if err := s.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	withStore(base, func(tx *objstore.Tx) error {
		return snapfmt.Write(tx, &snapfmt.Contents{Meta: snapfmt.Meta{Name: "warm", MemBytes: memBytes}, Memory: mem, DiskObject: StoreDiskObject})
	})
	before, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}

	rc := RestoreConfig{Store: base, Snapshot: "nope", Clone: filepath.Join(dir, "c0.store")}
	if _, _, err := openRestoreStore(&rc); err == nil {
		t.Fatal("a clone of a missing snapshot was made")
	}
	if _, err := os.Stat(filepath.Join(dir, "c0.store")); !os.IsNotExist(err) {
		t.Fatalf("a refused clone left its file: %v", err)
	}
	clone := filepath.Join(dir, "c1.store")
	rc = RestoreConfig{Store: base, Snapshot: "warm", Clone: clone}
	dev, made, err := openRestoreStore(&rc)
	if err != nil {
		t.Fatal(err)
	}
	if made != clone || rc.Store != clone {
		t.Fatalf("made %q, Store %q", made, rc.Store)
	}
	if _, _, err := openRestoreStore(&RestoreConfig{Store: base, Snapshot: "warm", Clone: clone}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a second clone into the same file: %v", err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	// The clone changes page 4 of the snapshot's memory: a block of its own.
	mem[4*4096] = 0xee
	err = s.Update(func(tx *objstore.Tx) error {
		o, err := tx.Open(snapfmt.Object("warm", snapfmt.ObjMem))
		if err != nil {
			return err
		}
		_, err = o.WriteAt([]byte{0xee}, 4*4096)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var extents []snapfmt.Extent
	err = s.View(func(tx *objstore.Tx) error {
		m, err := snapfmt.ReadMeta(tx, "warm")
		if err != nil {
			return err
		}
		extents, err = snapfmt.MemoryExtents(tx, m)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := newGuestMemory(memBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer gm.close()
	for _, e := range extents {
		if err := mapExtent(gm, dev, e); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gm.mem, mem) {
		t.Fatal("the mapped memory is not the clone's snapshot memory")
	}
	for i := range gm.mem {
		gm.mem[i] = 0x55 // private pages: neither file changes
	}
	s.Close()
	dev.Close()
	after, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the base file changed")
	}
	bd, err := filedev.Open(base, filedev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bd.Close()
	if r := objstore.Fsck(bd); !r.OK() {
		t.Fatalf("base: %s", r)
	}
	cd, err := filedev.Open(clone, filedev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cd.Close()
	if r := objstore.Fsck(cd); !r.OK() {
		t.Fatalf("clone: %s", r)
	}
}

// TestCloneIncremental: a clone's snapshot is incremental to the base's
// snapshot it was restored from, as snapshotNow takes it: the pages the
// clone wrote (found by privatePages in the memory mapped from the base's
// file) are all the clone store gets; the rest is shared with the base,
// which is not written. The snapshot maps back to the clone's memory.
// Without KVM: memory mapped and written as a restored VM's is.
func TestCloneIncremental(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "vm.store")
	if err := CreateStoreDisk(base, 1<<20); err != nil {
		t.Fatal(err)
	}
	const memBytes = 8 << 20
	mem := make([]byte, memBytes)
	for i := range mem {
		mem[i] = byte(i>>12) | 1
	}
	dev, err := filedev.Open(base, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *objstore.Tx) error {
		return snapfmt.Write(tx, &snapfmt.Contents{Meta: snapfmt.Meta{Name: "warm"}, Memory: mem, DiskObject: StoreDiskObject})
	})
	s.Close()
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}

	clone := filepath.Join(dir, "c1.store")
	rc := RestoreConfig{Store: base, Snapshot: "warm", Clone: clone}
	if dev, _, err = openRestoreStore(&rc); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if s, err = objstore.Open(dev); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mapSnapshot := func(name string) *GuestMemory {
		t.Helper()
		gm, err := newGuestMemory(memBytes)
		if err != nil {
			t.Fatal(err)
		}
		err = s.View(func(tx *objstore.Tx) error {
			m, err := snapfmt.ReadMeta(tx, name)
			if err != nil {
				return err
			}
			es, err := snapfmt.MemoryExtents(tx, m)
			for _, e := range es {
				if err == nil {
					err = mapExtent(gm, dev, e)
				}
			}
			return err
		})
		if err != nil {
			gm.close()
			t.Fatal(err)
		}
		return gm
	}
	gm := mapSnapshot("warm")
	defer gm.close()
	// The clone reads all its memory and writes 5 pages (one zeroed).
	var sum int
	for _, b := range gm.mem {
		sum += int(b)
	}
	for _, p := range []int{3, 100, 101, 102} {
		gm.mem[p*pageSize+7] ^= 0xff
	}
	clear(gm.mem[500*pageSize : 501*pageSize])
	dirty, err := gm.privatePages()
	if err != nil {
		t.Fatal(err)
	}
	before0 := allocatedBytes(t, clone)
	c := &snapfmt.Contents{Meta: snapfmt.Meta{Name: "later", Parent: "warm"}, Memory: gm.mem, Dirty: dirty, DiskObject: StoreDiskObject}
	err = s.Update(func(tx *objstore.Tx) error {
		// snapshotNow's test of the parent: the clone holds the base's.
		if ok, err := snapfmt.Exists(tx, "warm"); err != nil || !ok {
			return fmt.Errorf("the base's snapshot warm in the clone: found %v, %v", ok, err)
		}
		return snapfmt.Write(tx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	grew := allocatedBytes(t, clone) - before0
	t.Logf("later: parent %q, %d bytes stored, %d dirty; the clone file grew by %d KiB", c.Meta.Parent, c.Meta.MemStored, c.Meta.MemDirty, grew>>10)
	if c.Meta.Parent != "warm" || c.Meta.MemDirty != 5*pageSize || c.Meta.MemStored != 5*pageSize {
		t.Errorf("later: parent %q, %d bytes stored, %d dirty; want incremental to warm, the 5 pages written", c.Meta.Parent, c.Meta.MemStored, c.Meta.MemDirty)
	}
	if grew > 1<<20 {
		t.Errorf("the clone file grew by %d KiB for 5 pages (warm's memory is %d KiB)", grew>>10, memBytes>>10)
	}
	lm := mapSnapshot("later")
	defer lm.close()
	if !bytes.Equal(lm.mem, gm.mem) {
		t.Error("snapshot later does not map to the clone's memory")
	}
	after, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the base file changed")
	}
	if r := s.Fsck(); !r.OK() {
		t.Errorf("clone: %s", r)
	}
}

// allocatedBytes returns the bytes of disk a sparse file takes.
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
