package objstore

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestManySmallCommits overwrites random blocks of a 1024-block object in
// one transaction each, as a disk does, with a two-level refcount tree.
func TestManySmallCommits(t *testing.T) {
	dev := NewMemDevice(nil)
	s, err := Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(rand.New(rand.NewPCG(3, 3)), 1024*BlockSize)
	err = s.Update(func(tx *Tx) error {
		o, err := tx.Create("disk")
		if err != nil {
			return err
		}
		_, err = o.WriteAt(data, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	val := randBytes(rng, BlockSize)
	for i := 0; i < 1500; i++ {
		off := rng.IntN(1024) * BlockSize
		err := s.Update(func(tx *Tx) error {
			o, err := tx.Open("disk")
			if err != nil {
				return err
			}
			_, err = o.WriteAt(val, int64(off))
			return err
		})
		if err != nil {
			t.Fatal(i, err)
		}
		copy(data[off:], val)
		if i%100 == 99 {
			if r := Fsck(dev); !r.OK() {
				t.Fatal(i, r)
			}
		}
	}
	got, err := snapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := equalState(got, map[string][]byte{"disk": data}); err != nil {
		t.Fatal(err)
	}
}

// TestCacheInvalidatedOnAlloc: successive versions of a metadata block can
// have the same CRC32C (it is linear, and such blocks differ only in child
// checksums), so a cached block must be dropped when its block number is
// allocated again, not trusted because the checksum matches.
func TestCacheInvalidatedOnAlloc(t *testing.T) {
	dev := NewMemDevice(nil)
	s, _ := Create(dev)
	s.Update(func(tx *Tx) error {
		o, _ := tx.Create("a")
		_, err := o.WriteAt([]byte("x"), 0)
		return err
	})
	s.Update(func(tx *Tx) error { return tx.Delete("a") })
	tx, _ := s.Begin(true)
	defer tx.Abort()
	if len(tx.free) == 0 {
		t.Fatal("no released block to reuse")
	}
	next := tx.free[len(tx.free)-1]
	stale := make([]byte, BlockSize)
	stale[0] = 0xEE
	s.cache[next] = cacheEntry{crc: 12345, b: stale}
	b, err := tx.alloc()
	if err != nil {
		t.Fatal(err)
	}
	if b != next {
		t.Fatalf("allocated %d, expected the released block %d", b, next)
	}
	if _, ok := s.cache[b]; ok {
		t.Fatal("cache entry of a reallocated block survived")
	}
}

// TestExtentsAndHoles: extents give block-aligned device offsets whose
// bytes are the object's, holes read as zeros and use no space.
func TestExtentsAndHoles(t *testing.T) {
	dev := NewMemDevice(nil)
	s, _ := Create(dev)
	a := randBytes(rand.New(rand.NewPCG(1, 1)), 3*BlockSize)
	c := randBytes(rand.New(rand.NewPCG(2, 2)), 1000)
	err := s.Update(func(tx *Tx) error {
		o, err := tx.Create("mem")
		if err != nil {
			return err
		}
		if _, err := o.WriteAt(a, 0); err != nil {
			return err
		}
		if _, err := o.WriteAt(c, 300*BlockSize); err != nil {
			return err
		}
		if err := o.Truncate(1 << 30); err != nil { // a 1 GiB object, nearly all hole
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx *Tx) error {
		u, err := tx.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if u.UsedBytes > 20*BlockSize {
			t.Errorf("a sparse 1 GiB object uses %d bytes", u.UsedBytes)
		}
		o, _ := tx.Open("mem")
		ext, err := o.Extents()
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			logical, length int64
			hole            bool
		}{{0, 3 * BlockSize, false}, {3 * BlockSize, 297 * BlockSize, true}, {300 * BlockSize, BlockSize, false}, {301 * BlockSize, 1<<30 - 301*BlockSize, true}}
		if len(ext) != len(want) {
			t.Fatalf("extents %+v", ext)
		}
		img := dev.Bytes()
		for i, w := range want {
			e := ext[i]
			if e.Logical != w.logical || e.Length != w.length || e.Hole != w.hole {
				t.Fatalf("extent %d: %+v, want %+v", i, e, w)
			}
			if !e.Hole && e.Device%BlockSize != 0 {
				t.Fatalf("extent %d not block aligned: %+v", i, e)
			}
		}
		if !bytes.Equal(img[ext[0].Device:ext[0].Device+3*BlockSize], a) {
			t.Error("device bytes of extent 0 differ")
		}
		if !bytes.Equal(img[ext[2].Device:ext[2].Device+1000], c) || !bytes.Equal(img[ext[2].Device+1000:ext[2].Device+BlockSize], make([]byte, BlockSize-1000)) {
			t.Error("device bytes of extent 2 differ")
		}
		buf := make([]byte, 2*BlockSize)
		if _, err := o.ReadAt(buf, 500*BlockSize); err != nil || !bytes.Equal(buf, make([]byte, len(buf))) {
			t.Errorf("hole does not read as zeros: %v", err)
		}
		return nil
	})
}

// TestCloneIsO1: cloning writes the same few blocks whatever the size.
func TestCloneIsO1(t *testing.T) {
	for _, blocks := range []int{1, 300, 20000} {
		dev := &countDev{MemDevice: NewMemDevice(nil)}
		s, _ := Create(dev)
		data := benchData(blocks * BlockSize)
		s.Update(func(tx *Tx) error {
			o, _ := tx.Create("src")
			_, err := o.WriteAt(data, 0)
			return err
		})
		before := dev.Size()
		dev.writes = 0
		n0 := len(dev.MemDevice.data)
		if err := s.Update(func(tx *Tx) error { return tx.Clone("src", "dst") }); err != nil {
			t.Fatal(err)
		}
		if dev.writes > 4 || dev.Size() != before || len(dev.MemDevice.data) != n0 {
			t.Errorf("%d blocks: clone made %d writes, device %d -> %d", blocks, dev.writes, before, dev.Size())
		}
		// Copy-on-write: changing the clone leaves the source alone.
		s.Update(func(tx *Tx) error {
			o, _ := tx.Open("dst")
			_, err := o.WriteAt([]byte("changed"), int64(blocks*BlockSize/2))
			return err
		})
		got, _ := snapshot(s)
		if !bytes.Equal(got["src"], data) || bytes.Equal(got["dst"], data) || len(got["dst"]) != len(data) {
			t.Errorf("%d blocks: copy-on-write broken", blocks)
		}
		if r := Fsck(dev); !r.OK() {
			t.Fatal(r)
		}
	}
}

// TestLargeTransaction writes more than the transaction buffers in memory
// (so data goes to the device before the commit), in small pieces, then
// overwrites parts of it and reads it back, before and after the commit.
func TestLargeTransaction(t *testing.T) {
	dev := NewMemDevice(nil)
	s, _ := Create(dev)
	rng := rand.New(rand.NewPCG(9, 9))
	const size = 12 << 20
	want := make([]byte, size)
	tx, _ := s.Begin(true)
	o, err := tx.Create("big")
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < size; {
		n := min(1+rng.IntN(3*BlockSize), size-off)
		b := randBytes(rng, n)
		if _, err := o.WriteAt(b, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], b)
		off += n
	}
	if len(tx.dirtyData)*BlockSize > dataCap+BlockSize {
		t.Fatalf("%d dirty blocks buffered", len(tx.dirtyData))
	}
	for i := 0; i < 200; i++ {
		off := rng.IntN(size - 2*BlockSize)
		b := randBytes(rng, 1+rng.IntN(2*BlockSize))
		if _, err := o.WriteAt(b, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], b)
	}
	got, err := readAll(tx, "big")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read in the transaction: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(dev)
	all, err := snapshot(s2)
	if err != nil || !bytes.Equal(all["big"], want) {
		t.Fatalf("after commit: %v", err)
	}
	if r := Fsck(dev); !r.OK() {
		t.Fatal(r)
	}
}
