package snapshot

import (
	"bytes"
	"math/rand"
	"testing"

	"github.com/amberos/amber/objstore"
)

// recorder is a device that records the writes and flushes made to it.
type recorder struct {
	*objstore.MemDevice
	ops []op
}

type op struct {
	off   int64
	data  []byte // nil: a flush
	grow  int64
	flush bool
}

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	r.ops = append(r.ops, op{off: off, data: append([]byte(nil), p...)})
	return r.MemDevice.WriteAt(p, off)
}

func (r *recorder) Flush() error {
	r.ops = append(r.ops, op{flush: true})
	return r.MemDevice.Flush()
}

func (r *recorder) Grow(size int64) error {
	r.ops = append(r.ops, op{grow: size})
	return r.MemDevice.Grow(size)
}

// readMem rebuilds a snapshot's guest memory from its extents in img.
func readMem(t *testing.T, tx *objstore.Tx, img []byte, name string) []byte {
	t.Helper()
	m, err := ReadMeta(tx, name)
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	es, err := MemoryExtents(tx, m)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, m.MemBytes)
	for _, e := range es {
		copy(mem[e.GuestAddr:e.GuestAddr+e.Length], img[e.FileOffset:e.FileOffset+e.Length])
	}
	return mem
}

// A VMM killed (or the host losing power) at any point while it takes a
// snapshot leaves the earlier snapshot whole, the disk as last
// committed, and the new snapshot either whole or absent: the device is
// rebuilt from the writes issued before the cut (and, after the last
// flush, a random subset of them, as a power cut may lose), at every
// flush and at random points.
func TestCrashDuringSnapshot(t *testing.T) {
	s, dev := newStore(t)
	memA := guestMemory()
	if err := s.Update(func(tx *objstore.Tx) error {
		return Write(tx, &Contents{Meta: Meta{Name: "a"}, Memory: memA, DiskObject: "vm/disk"})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	base := dev.Bytes()

	rec := &recorder{MemDevice: objstore.NewMemDevice(base)}
	s, err := objstore.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	memB := guestMemory()
	for i := 0; i < len(memB); i += 3 * PageSize {
		memB[i] = byte(i>>12) | 1
	}
	// The disk's cached writes, committed as the snapshot starts; the
	// snapshot; then the disk goes on.
	setDisk := func(v string) {
		if err := s.Update(func(tx *objstore.Tx) error {
			o, err := tx.Open("vm/disk")
			if err != nil {
				return err
			}
			_, err = o.WriteAt([]byte(v), 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	setDisk("disk v2")
	if err := s.Update(func(tx *objstore.Tx) error {
		return Write(tx, &Contents{Meta: Meta{Name: "b"}, VCPU: []byte("vcpu b"), Memory: memB, DiskObject: "vm/disk"})
	}); err != nil {
		t.Fatal(err)
	}
	setDisk("disk v3")
	s.Close()

	var cuts []int
	for i, o := range rec.ops {
		if o.flush {
			cuts = append(cuts, i, i+1)
		}
	}
	rng := rand.New(rand.NewSource(1))
	for range 20 {
		cuts = append(cuts, rng.Intn(len(rec.ops)+1))
	}
	sawB := false
	for _, cut := range cuts {
		lastFlush := 0
		for i := 0; i < cut; i++ {
			if rec.ops[i].flush {
				lastFlush = i + 1
			}
		}
		img := append([]byte(nil), base...)
		for i, o := range rec.ops[:cut] {
			switch {
			case o.grow > int64(len(img)):
				img = append(img, make([]byte, o.grow-int64(len(img)))...)
			case o.data != nil && (i < lastFlush || rng.Intn(2) == 0):
				copy(img[o.off:], o.data)
			}
		}
		d := objstore.NewMemDevice(img)
		cs, err := objstore.Open(d)
		if err != nil {
			t.Fatalf("cut at op %d of %d: the store does not open: %v", cut, len(rec.ops), err)
		}
		if r := cs.Fsck(); !r.OK() {
			t.Fatalf("cut at op %d: fsck: %v", cut, r)
		}
		err = cs.View(func(tx *objstore.Tx) error {
			if got := readMem(t, tx, img, "a"); !bytes.Equal(got, memA) {
				t.Errorf("cut at op %d: snapshot a's memory changed", cut)
			}
			disk := make([]byte, 7)
			o, err := tx.Open("vm/disk")
			if err != nil {
				return err
			}
			o.ReadAt(disk, 0)
			if d := string(disk); d != "disk v1" && d != "disk v2" && d != "disk v3" {
				t.Errorf("cut at op %d: the disk reads %q, no committed state", cut, d)
			}
			ok, err := Exists(tx, "b")
			if err != nil || !ok {
				return err
			}
			sawB = true
			if got := readMem(t, tx, img, "b"); !bytes.Equal(got, memB) {
				t.Errorf("cut at op %d: snapshot b is there but its memory differs", cut)
			}
			if v, _, err := ReadState(tx, "b"); err != nil || string(v) != "vcpu b" {
				t.Errorf("cut at op %d: snapshot b's vCPU state %q, %v", cut, v, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("cut at op %d: %v", cut, err)
		}
		cs.Close()
	}
	if !sawB {
		t.Error("no cut left snapshot b committed: the test checks nothing about it")
	}
}

// A kill -9 (or a power cut) at any point of a Remove of two snapshots,
// one the parent of an incremental snapshot, leaves both or neither, and
// the incremental one's memory whole either way; fsck clean.
func TestCrashDuringRemove(t *testing.T) {
	s, dev := newStore(t)
	memA := guestMemory()
	memB := append([]byte(nil), memA...)
	copy(memB[3*PageSize:], "page 3 of b")
	for _, c := range []*Contents{
		{Meta: Meta{Name: "a"}, Memory: memA, DiskObject: "vm/disk"},
		{Meta: Meta{Name: "b", Parent: "a"}, Memory: memB, DiskObject: "vm/disk", Dirty: []uint64{1 << 3}},
		{Meta: Meta{Name: "c"}, Memory: memA, DiskObject: "vm/disk"},
	} {
		if err := s.Update(func(tx *objstore.Tx) error { return Write(tx, c) }); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	base := dev.Bytes()
	rec := &recorder{MemDevice: objstore.NewMemDevice(base)}
	s, err := objstore.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *objstore.Tx) error { _, err := Remove(tx, []string{"a", "c"}); return err }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cuts := []int{len(rec.ops)}
	for i, o := range rec.ops {
		if o.flush {
			cuts = append(cuts, i, i+1)
		}
	}
	rng := rand.New(rand.NewSource(2))
	for range 20 {
		cuts = append(cuts, rng.Intn(len(rec.ops)+1))
	}
	sawGone, sawKept := false, false
	for _, cut := range cuts {
		lastFlush := 0
		for i := 0; i < cut; i++ {
			if rec.ops[i].flush {
				lastFlush = i + 1
			}
		}
		img := append([]byte(nil), base...)
		for i, o := range rec.ops[:cut] {
			switch {
			case o.grow > int64(len(img)):
				img = append(img, make([]byte, o.grow-int64(len(img)))...)
			case o.data != nil && (i < lastFlush || rng.Intn(2) == 0):
				copy(img[o.off:], o.data)
			}
		}
		cs, err := objstore.Open(objstore.NewMemDevice(img))
		if err != nil {
			t.Fatalf("cut at op %d of %d: the store does not open: %v", cut, len(rec.ops), err)
		}
		if r := cs.Fsck(); !r.OK() {
			t.Fatalf("cut at op %d: fsck: %v", cut, r)
		}
		err = cs.View(func(tx *objstore.Tx) error {
			a, _ := Exists(tx, "a")
			c, _ := Exists(tx, "c")
			if a != c {
				t.Errorf("cut at op %d: a %v, c %v: half a Remove", cut, a, c)
			}
			sawKept = sawKept || a
			sawGone = sawGone || !a
			if got := readMem(t, tx, img, "b"); !bytes.Equal(got, memB) {
				t.Errorf("cut at op %d: b's memory changed", cut)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("cut at op %d: %v", cut, err)
		}
		cs.Close()
	}
	if !sawGone || !sawKept {
		t.Errorf("cuts saw the snapshots kept %v, gone %v: want both", sawKept, sawGone)
	}
}
