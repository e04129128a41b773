package objstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// buildStore makes a store with a few objects of several shapes, committed
// twice more at the end so that both superblocks describe the final state.
func buildStore(t testing.TB, seed uint64, trim bool) (*MemDevice, map[string][]byte) {
	rng := rand.New(rand.NewPCG(seed, 3))
	dev := NewMemDevice(nil)
	s, err := Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string][]byte{}
	for i := 0; i < 12; i++ {
		tx, _ := s.Begin(true)
		for j := 0; j < 3; j++ {
			if err := randomOp(t, rng, tx, model, 6*BlockSize); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ { // touch every object's inode: same contents
		err := s.Update(func(tx *Tx) error {
			o, err := tx.Create(fmt.Sprint("tmp", i))
			if err != nil {
				return err
			}
			_ = o
			return tx.Delete(fmt.Sprint("tmp", i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if trim {
		dev.data = dev.data[:s.meta.nblocks*BlockSize]
	}
	return dev, model
}

func TestCorruption(t *testing.T) {
	dev, model := buildStore(t, 1, true)
	clean := dev.Bytes()
	r, refs := fsck(dev)
	if !r.OK() {
		t.Fatal(r)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	detected := 0
	for trial := 0; trial < 1500; trial++ {
		img := append([]byte(nil), clean...)
		var blk uint64
		if trial%2 == 0 { // aim at a used block half of the time
			keys := make([]uint64, 0, len(refs))
			for b := range refs {
				keys = append(keys, b)
			}
			keys = append(keys, 0, 1)
			blk = keys[rng.IntN(len(keys))]
		} else {
			blk = uint64(rng.IntN(len(img) / BlockSize))
		}
		used := blk < firstBlock || refs[blk] > 0
		flips := 1 + rng.IntN(3)
		for i := 0; i < flips; i++ {
			bit := rng.IntN(BlockSize * 8)
			img[int(blk)*BlockSize+bit/8] ^= 1 << (bit % 8)
		}
		d := &MemDevice{data: img}
		rep := Fsck(d)
		if used && rep.OK() {
			t.Fatalf("trial %d: flipped %d bits in used block %d, fsck clean", trial, flips, blk)
		}
		if !used && !rep.OK() {
			t.Fatalf("trial %d: flipped bits in unused block %d, fsck reports:\n%s", trial, blk, rep)
		}
		s, err := Open(d)
		if err != nil {
			detected++
			continue
		}
		got, err := snapshot(s)
		if err != nil {
			detected++
			if _, ok := errorsAsCorrupt(err); !ok {
				t.Fatalf("trial %d: error is not a CorruptError: %v", trial, err)
			}
			continue
		}
		if err := equalState(got, model); err != nil {
			t.Fatalf("trial %d (block %d): wrong data returned without error: %v", trial, blk, err)
		}
	}
	t.Logf("%d opens or reads failed cleanly", detected)
}

func errorsAsCorrupt(err error) (*CorruptError, bool) {
	for e := err; e != nil; {
		if c, ok := e.(*CorruptError); ok {
			return c, true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return nil, false
		}
		e = u.Unwrap()
	}
	return nil, false
}

func TestCorruptErrorNamesObject(t *testing.T) {
	dev := NewMemDevice(nil)
	s, _ := Create(dev)
	err := s.Update(func(tx *Tx) error {
		o, err := tx.Create("disk")
		if err != nil {
			return err
		}
		_, err = o.WriteAt(bytes.Repeat([]byte("x"), 3*BlockSize), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var devOff int64
	s.View(func(tx *Tx) error {
		o, _ := tx.Open("disk")
		ext, err := o.Extents()
		if err != nil || len(ext) != 1 || ext[0].Hole || ext[0].Length != 3*BlockSize || ext[0].Device%BlockSize != 0 {
			t.Fatalf("extents %+v, %v", ext, err)
		}
		devOff = ext[0].Device + BlockSize // logical block 1
		return nil
	})
	dev.data[devOff+100] ^= 4
	s2, _ := Open(dev)
	err = s2.View(func(tx *Tx) error { _, err := readAll(tx, "disk"); return err })
	c, ok := errorsAsCorrupt(err)
	if !ok || c.Object != "disk" || c.What != "data block 1" || c.Block != uint64(devOff/BlockSize) {
		t.Fatalf("got %v", err)
	}
	if r := Fsck(dev); r.OK() || !bytes.Contains([]byte(r.String()), []byte(`object "disk": data block 1`)) {
		t.Fatalf("fsck: %s", r)
	}
}

func TestSmallStoreSeed(t *testing.T) {
	img := smallStore(t)
	dev := NewMemDevice(img)
	if r := Fsck(dev); !r.OK() || r.Objects != 3 {
		t.Fatalf("seed store: %s", r)
	}
	s, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := snapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["disk"][:11]) != "boochangedr" || string(got["snap/1/disk"][:11]) != "boot sector" || len(got["snap/1/cpu"]) != 5000 {
		t.Fatalf("seed store contents wrong")
	}
}

// FuzzOpen opens arbitrary bytes as a store, reads everything, writes a
// little and runs Fsck: errors are fine, panics and hangs are not.
func FuzzOpen(f *testing.F) {
	f.Add(smallStore(f))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzBody(data) })
}

func fuzzBody(data []byte) {
	{
		if len(data) > 1<<20 {
			return
		}
		dev := NewMemDevice(data)
		s, err := Open(dev)
		if err != nil {
			return
		}
		snapshot(s)
		Fsck(dev)
		s.View(func(tx *Tx) error {
			tx.Usage()
			tx.List("", func(oi ObjectInfo) error {
				if o, err := tx.Open(oi.Name); err == nil {
					o.Extents()
					tx.SharedBytes(oi.Name)
				}
				return nil
			})
			return nil
		})
		s.Update(func(tx *Tx) error {
			var names []string
			tx.List("", func(oi ObjectInfo) error { names = append(names, oi.Name); return nil })
			for i, n := range names {
				switch i % 4 {
				case 0:
					if o, err := tx.Open(n); err == nil {
						o.WriteAt([]byte("hello"), 5000)
						o.Truncate(3)
					}
				case 1:
					tx.Clone(n, n+".c")
				case 2:
					tx.Delete(n)
				case 3:
					tx.Rename(n, n+".r")
				}
			}
			o, err := tx.Create("new")
			if err == nil {
				o.WriteAt(make([]byte, 3*BlockSize), 0)
			}
			return nil
		})
		Fsck(dev)
	}
}

// smallStore builds a compact store for the fuzz seed corpus: a few small
// objects, one of them with a two-level map, a clone, a rename, a delete.
func smallStore(t testing.TB) []byte {
	dev := NewMemDevice(nil)
	s, err := Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	steps := []func(tx *Tx) error{
		func(tx *Tx) error {
			o, _ := tx.Create("disk")
			o.WriteAt([]byte("boot sector"), 0)
			o.WriteAt([]byte("far away"), 300*BlockSize) // map height 2, holes
			p, _ := tx.Create("snap/1/regs")
			_, err := p.WriteAt(bytes.Repeat([]byte("r"), 5000), 0)
			return err
		},
		func(tx *Tx) error { return tx.Clone("disk", "snap/1/disk") },
		func(tx *Tx) error {
			o, _ := tx.Open("disk")
			_, err := o.WriteAt([]byte("changed"), 3)
			return err
		},
		func(tx *Tx) error { return tx.Rename("snap/1/regs", "snap/1/cpu") },
		func(tx *Tx) error { tx.Create("tmp"); return tx.Delete("tmp") },
	}
	for _, st := range steps {
		if err := s.Update(st); err != nil {
			t.Fatal(err)
		}
	}
	return dev.Bytes()[:s.meta.nblocks*BlockSize]
}

// TestConcurrentReaders runs readers while a writer commits: each reader
// must only ever see committed states, in order.
func TestConcurrentReaders(t *testing.T) {
	dev := NewMemDevice(nil)
	s, err := Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	content := func(i int) []byte {
		return bytes.Repeat([]byte{byte(i)}, 1+(i*977)%(5*BlockSize))
	}
	write := func(i int) error {
		return s.Update(func(tx *Tx) error {
			for _, n := range []string{"a", "b", "counter"} {
				tx.Delete(n)
			}
			a, err := tx.Create("a")
			if err != nil {
				return err
			}
			if _, err := a.WriteAt(content(i), 0); err != nil {
				return err
			}
			if err := tx.Clone("a", "b"); err != nil {
				return err
			}
			c, err := tx.Create("counter")
			if err != nil {
				return err
			}
			_, err = c.WriteAt([]byte(strconv.Itoa(i)), 0)
			return err
		})
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	const writes = 300
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	var seenMu sync.Mutex
	seen := map[int]bool{} // counter values readers saw
	done := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for {
				select {
				case <-done:
					return
				default:
				}
				err := s.View(func(tx *Tx) error {
					cb, err := readAll(tx, "counter")
					if err != nil {
						return err
					}
					i, err := strconv.Atoi(string(cb))
					if err != nil {
						return err
					}
					if i < last {
						return fmt.Errorf("counter went back from %d to %d", last, i)
					}
					last = i
					seenMu.Lock()
					seen[i] = true
					seenMu.Unlock()
					for _, n := range []string{"a", "b"} {
						b, err := readAll(tx, n)
						if err != nil {
							return err
						}
						if !bytes.Equal(b, content(i)) {
							return fmt.Errorf("%s does not match counter %d", n, i)
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 1; i <= writes; i++ {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched() // let the readers run between commits
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) < 3 {
		t.Fatalf("readers saw only %d states: the test did not overlap readers and the writer", len(seen))
	}
	t.Logf("readers saw %d of %d states", len(seen), writes+1)
	if r := Fsck(dev); !r.OK() {
		t.Fatal(r)
	}
}

// A Create cut between its two superblock writes leaves slot 1 zero: the
// store is empty at txid 0, Open takes it, and fsck finds nothing wrong;
// garbage in slot 1 is still a problem.
func TestFsckInterruptedCreate(t *testing.T) {
	dev := NewMemDevice(nil)
	if _, err := Create(dev); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt(make([]byte, BlockSize), BlockSize); err != nil {
		t.Fatal(err)
	}
	if r := Fsck(dev); !r.OK() {
		t.Errorf("fsck after an interrupted create: %v", r)
	}
	s, err := Open(dev)
	if err != nil {
		t.Fatalf("open after an interrupted create: %v", err)
	}
	tx, err := s.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Create("a"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if r := Fsck(dev); !r.OK() {
		t.Errorf("fsck after the first commit: %v", r)
	}
	dev2 := NewMemDevice(nil)
	if _, err := Create(dev2); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, BlockSize)
	junk[0] = 0x5a
	dev2.WriteAt(junk, BlockSize)
	if r := Fsck(dev2); r.OK() {
		t.Error("fsck found nothing wrong with a corrupt superblock 1")
	}
}
