package snapshot

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/amberos/amber/objstore"
)

// newStore returns a store in memory holding a disk object of 1 MiB whose
// first block says "disk v1".
func newStore(t *testing.T) (*objstore.Store, *objstore.MemDevice) {
	t.Helper()
	dev := objstore.NewMemDevice(nil)
	s, err := objstore.Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *objstore.Tx) error {
		o, err := tx.Create("vm/disk")
		if err != nil {
			return err
		}
		if err := o.Truncate(1 << 20); err != nil {
			return err
		}
		_, err = o.WriteAt([]byte("disk v1"), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, dev
}

// guestMemory is 64 pages: page 0 zero, pages 1-3 data, 4-40 zero, 41
// data, the rest zero but for a byte in the last page.
func guestMemory() []byte {
	mem := make([]byte, 64*PageSize)
	for p := 1; p <= 3; p++ {
		for i := range PageSize {
			mem[p*PageSize+i] = byte(p + i)
		}
	}
	copy(mem[41*PageSize:], "page 41")
	mem[len(mem)-1] = 0xee
	return mem
}

func TestWriteAndExtents(t *testing.T) {
	s, dev := newStore(t)
	mem := guestMemory()
	c := &Contents{Meta: Meta{Name: "warm", Image: "app.img", TSCHz: 1e9}, VCPU: []byte(`{"regs":1}`), Devices: []byte(`{}`), Memory: mem, DiskObject: "vm/disk"}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
		t.Fatal(err)
	}
	if c.Meta.MemStored != 5*PageSize {
		t.Errorf("MemStored = %d, want %d (5 non-zero pages)", c.Meta.MemStored, 5*PageSize)
	}
	// The disk goes on; the snapshot's clone keeps the old contents.
	err := s.Update(func(tx *objstore.Tx) error {
		o, err := tx.Open("vm/disk")
		if err != nil {
			return err
		}
		_, err = o.WriteAt([]byte("disk v2"), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *objstore.Tx) error {
		m, err := ReadMeta(tx, "warm")
		if err != nil {
			return err
		}
		if m.MemBytes != int64(len(mem)) || m.DiskBytes != 1<<20 || m.Image != "app.img" || m.Format != Version || m.Created.IsZero() {
			t.Errorf("meta = %+v", m)
		}
		es, err := MemoryExtents(tx, m)
		if err != nil {
			return err
		}
		// Rebuild memory from the device's bytes at the extents' offsets,
		// as a mapping would see it.
		img := dev.Bytes()
		got := make([]byte, len(mem))
		var mapped int64
		for _, e := range es {
			if e.FileOffset%PageSize != 0 || e.GuestAddr%PageSize != 0 || e.Length%PageSize != 0 {
				t.Errorf("extent %+v not page-aligned", e)
			}
			copy(got[e.GuestAddr:e.GuestAddr+e.Length], img[e.FileOffset:e.FileOffset+e.Length])
			mapped += e.Length
		}
		if !bytes.Equal(got, mem) {
			t.Error("memory rebuilt from the extents differs from the guest's")
		}
		if mapped != 5*PageSize {
			t.Errorf("extents cover %d bytes, want only the 5 non-zero pages", mapped)
		}
		vcpu, devs, err := ReadState(tx, "warm")
		if err != nil {
			return err
		}
		if string(vcpu) != `{"regs":1}` || string(devs) != `{}` {
			t.Errorf("state = %q, %q", vcpu, devs)
		}
		d, err := tx.Open(Object("warm", ObjDisk))
		if err != nil {
			return err
		}
		b := make([]byte, 7)
		if _, err := d.ReadAt(b, 0); err != nil {
			return err
		}
		if string(b) != "disk v1" {
			t.Errorf("snapshot's disk reads %q, want the disk as of the snapshot", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Fsck(); !r.OK() {
		t.Fatalf("fsck: %v", r)
	}
}

// Pages outside the Touched bitmap are taken as zero and not read.
func TestTouchedBitmap(t *testing.T) {
	s, dev := newStore(t)
	mem := guestMemory()
	touched := make([]uint64, 1)
	touched[0] = 1<<1 | 1<<2 | 1<<41 // page 3 and the last are left out
	c := &Contents{Meta: Meta{Name: "t"}, Memory: mem, Touched: touched}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
		t.Fatal(err)
	}
	if c.Meta.MemStored != 3*PageSize {
		t.Errorf("MemStored = %d, want 3 pages", c.Meta.MemStored)
	}
	s.View(func(tx *objstore.Tx) error {
		got := readMem(t, tx, dev.Bytes(), "t")
		want := append([]byte(nil), mem...)
		clear(want[3*PageSize : 4*PageSize])
		clear(want[len(want)-PageSize:])
		if !bytes.Equal(got, want) {
			t.Error("memory differs")
		}
		return nil
	})
	if err := s.Update(func(tx *objstore.Tx) error {
		return Write(tx, &Contents{Meta: Meta{Name: "short"}, Memory: make([]byte, 65*PageSize), Touched: make([]uint64, 1)})
	}); err == nil {
		t.Error("a bitmap shorter than memory accepted")
	}
}

func TestRefuseOtherVersion(t *testing.T) {
	s, _ := newStore(t)
	c := &Contents{Meta: Meta{Name: "old"}, Memory: make([]byte, PageSize)}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		meta, want string
	}{
		{`{"format": 99, "name": "old", "memBytes": "a string in a future format"}`, "format version 99; this vmm reads version 1"},
		{`{"name": "old"}`, "without a format version"},
		{`not json`, "unreadable metadata"},
		{`{"format": 1, "name": "other", "memBytes": 4096}`, `names snapshot "other"`},
		{`{"format": 1, "name": "old", "memBytes": 100}`, "not a positive whole number of pages"},
	} {
		err := s.Update(func(tx *objstore.Tx) error {
			if err := tx.Delete(Object("old", ObjMeta)); err != nil {
				return err
			}
			return putObject(tx, Object("old", ObjMeta), []byte(tc.meta))
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.View(func(tx *objstore.Tx) error {
			_, err := ReadMeta(tx, "old")
			return err
		})
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("meta %s: err = %v, want a FormatError saying %q", tc.meta, err, tc.want)
		}
	}
	// List shows it, with the reason.
	err := s.View(func(tx *objstore.Tx) error {
		l, err := List(tx)
		if err != nil {
			return err
		}
		if len(l) != 1 || l[0].Name != "old" || l[0].Err == nil {
			t.Errorf("List = %+v", l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNamesAndErrors(t *testing.T) {
	for _, n := range []string{"", ".hidden", "a/b", "a b", "x@y", strings.Repeat("a", 129)} {
		if CheckName(n) == nil {
			t.Errorf("CheckName(%q) accepted it", n)
		}
	}
	for _, n := range []string{"warm", "v1.2-rc_3", strings.Repeat("a", 128)} {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q): %v", n, err)
		}
	}
	s, _ := newStore(t)
	c := &Contents{Meta: Meta{Name: "a"}, Memory: make([]byte, PageSize)}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
		t.Fatal(err)
	}
	c2 := &Contents{Meta: Meta{Name: "a"}, Memory: make([]byte, PageSize)}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c2) }); !errors.Is(err, ErrExists) {
		t.Errorf("second snapshot a: %v, want ErrExists", err)
	}
	if err := s.Update(func(tx *objstore.Tx) error {
		return Write(tx, &Contents{Meta: Meta{Name: "b"}, Memory: make([]byte, 100)})
	}); err == nil {
		t.Error("memory of 100 bytes accepted")
	}
	if err := s.View(func(tx *objstore.Tx) error { _, err := ReadMeta(tx, "nosuch"); return err }); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadMeta(nosuch) = %v, want ErrNotFound", err)
	}
	// A transaction that is aborted leaves nothing of the snapshot.
	tx, err := s.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(tx, &Contents{Meta: Meta{Name: "gone"}, Memory: guestMemory(), DiskObject: "vm/disk"}); err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	if err := s.View(func(tx *objstore.Tx) error {
		n := 0
		tx.List(Prefix+"gone/", func(objstore.ObjectInfo) error { n++; return nil })
		if n != 0 {
			t.Errorf("%d objects of an aborted snapshot", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *objstore.Tx) error { return Delete(tx, "a") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *objstore.Tx) error { return Delete(tx, "a") }); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a twice: %v", err)
	}
	if r := s.Fsck(); !r.OK() {
		t.Fatalf("fsck: %v", r)
	}
}

// readSnapMem reads a snapshot's whole memory object.
func readSnapMem(t *testing.T, tx *objstore.Tx, name string, n int) []byte {
	t.Helper()
	o, err := tx.Open(Object(name, ObjMem))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := o.ReadAt(b, 0); err != nil && err.Error() != "EOF" {
		t.Fatal(err)
	}
	return b
}

// An incremental snapshot writes only the dirty pages (a page that became
// zero included), shares the rest with its parent, reads back as the
// memory it was taken of, and survives its parent's deletion.
func TestIncremental(t *testing.T) {
	s, _ := newStore(t)
	mem := guestMemory()
	c := &Contents{Meta: Meta{Name: "full", TSCHz: 1e9}, VCPU: []byte(`{}`), Devices: []byte(`{}`), Memory: mem, DiskObject: "vm/disk"}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
		t.Fatal(err)
	}
	mem2 := append([]byte(nil), mem...)
	dirty := make([]uint64, 1)
	copy(mem2[2*PageSize:], "page 2 changed") // data over data
	clear(mem2[41*PageSize : 42*PageSize])    // data to zero
	copy(mem2[50*PageSize:], "page 50 new")   // zero to data
	dirty[0] = 1<<2 | 1<<41 | 1<<50 | 1<<60   // page 60: written, still zero (not stored)
	c2 := &Contents{Meta: Meta{Name: "inc", Parent: "full", TSCHz: 1e9}, VCPU: []byte(`{}`), Devices: []byte(`{}`), Memory: mem2, DiskObject: "vm/disk", Dirty: dirty}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c2) }); err != nil {
		t.Fatal(err)
	}
	if c2.Meta.MemStored != 3*PageSize {
		t.Errorf("incremental MemStored = %d, want %d (3 pages)", c2.Meta.MemStored, 3*PageSize)
	}
	if err := s.Update(func(tx *objstore.Tx) error { return Delete(tx, "full") }); err != nil {
		t.Fatal(err)
	}
	err := s.View(func(tx *objstore.Tx) error {
		m, err := ReadMeta(tx, "inc")
		if err != nil {
			return err
		}
		if m.Parent != "full" || m.MemDirty != 4*PageSize {
			t.Errorf("Parent = %q, MemDirty = %d; want full and 4 pages", m.Parent, m.MemDirty)
		}
		if got := readSnapMem(t, tx, "inc", len(mem2)); !bytes.Equal(got, mem2) {
			t.Error("the incremental snapshot's memory differs from the memory it was taken of")
		}
		es, err := MemoryExtents(tx, m)
		if err != nil {
			return err
		}
		got := make([]byte, len(mem2))
		for _, e := range es {
			copy(got[e.GuestAddr:], readSnapMem(t, tx, "inc", len(mem2))[e.GuestAddr:e.GuestAddr+e.Length])
		}
		if !bytes.Equal(got, mem2) {
			t.Error("the memory outside the extents is not zero")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A parent that does not exist is an error, not a full snapshot.
	c3 := &Contents{Meta: Meta{Name: "inc2", Parent: "nosuch"}, VCPU: []byte(`{}`), Devices: []byte(`{}`), Memory: mem2, Dirty: dirty}
	if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c3) }); !errors.Is(err, ErrNotFound) {
		t.Errorf("an incremental snapshot of a missing parent: %v", err)
	}
}

// Remove deletes several snapshots in one transaction, or none when a
// name is missing (the error names it); the incremental snapshots of a
// deleted parent keep their memory and are reported; the space of the
// pages no snapshot shares any more is freed; fsck stays clean.
func TestRemove(t *testing.T) {
	s, _ := newStore(t)
	mem := guestMemory()
	write := func(name, parent string, m []byte, dirty []uint64) {
		t.Helper()
		c := &Contents{Meta: Meta{Name: name, Parent: parent, TSCHz: 1e9}, VCPU: []byte(`{}`), Devices: []byte(`{}`), Memory: m, DiskObject: "vm/disk", Dirty: dirty}
		if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
			t.Fatal(err)
		}
	}
	write("full", "", mem, nil)
	mem2 := append([]byte(nil), mem...)
	copy(mem2[2*PageSize:], "page 2 changed")
	write("inc", "full", mem2, []uint64{1 << 2})
	write("other", "", mem, nil)
	used := func() int64 {
		var u objstore.Usage
		if err := s.View(func(tx *objstore.Tx) (err error) { u, err = tx.Usage(); return err }); err != nil {
			t.Fatal(err)
		}
		return u.UsedBytes / PageSize
	}
	before := used()
	var orphans []string
	err := s.Update(func(tx *objstore.Tx) (err error) {
		orphans, err = Remove(tx, []string{"full", "nosuch", "other"})
		return err
	})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("removing with a missing name: %v; want ErrNotFound naming it", err)
	}
	if err := s.View(func(tx *objstore.Tx) error {
		for _, n := range []string{"full", "inc", "other"} {
			if ok, _ := Exists(tx, n); !ok {
				t.Errorf("%s was deleted by a Remove that failed", n)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *objstore.Tx) (err error) {
		orphans, err = Remove(tx, []string{"full", "other", "full"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || orphans[0] != "inc" {
		t.Errorf("orphans %v, want [inc]", orphans)
	}
	if err := s.View(func(tx *objstore.Tx) error {
		l, err := List(tx)
		if err != nil || len(l) != 1 || l[0].Name != "inc" {
			t.Errorf("left: %+v, %v; want inc", l, err)
		}
		if got := readSnapMem(t, tx, "inc", len(mem2)); !bytes.Equal(got, mem2) {
			t.Error("the incremental snapshot lost memory with its parent")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// "other" shared nothing: its pages are free now; "full"'s are inc's.
	if after := used(); after > before-5 {
		t.Errorf("%d used blocks after deleting, %d before: other's 5 pages not freed", after, before)
	}
	if r := s.Fsck(); !r.OK() {
		t.Fatalf("fsck: %v", r)
	}
}
