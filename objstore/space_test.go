package objstore

import (
	"bytes"
	"testing"
)

type countDev struct {
	*MemDevice
	writes int
}

func (c *countDev) WriteAt(p []byte, off int64) (int, error) {
	c.writes++
	return c.MemDevice.WriteAt(p, off)
}

// TestCommitCostAndReuse: a one-block overwrite costs two flushes and a
// few writes, and the space freed by overwrites is reused (the device
// stops growing).
func TestCommitCostAndReuse(t *testing.T) {
	dev := &countDev{MemDevice: NewMemDevice(nil)}
	s, _ := Create(dev)
	err := s.Update(func(tx *Tx) error {
		o, _ := tx.Create("disk")
		_, err := o.WriteAt(benchData(1024*BlockSize), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	val := benchData(BlockSize)
	const n = 3000
	var sizeAfter1000 int64
	flushes := dev.Flushes
	dev.writes = 0
	for i := 0; i < n; i++ {
		err := s.Update(func(tx *Tx) error {
			o, _ := tx.Open("disk")
			_, err := o.WriteAt(val, int64(i*7%1024)*BlockSize)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 999 {
			sizeAfter1000 = dev.Size()
		}
	}
	if got := float64(dev.Flushes-flushes) / n; got != 2 {
		t.Errorf("%.2f flushes per commit, want 2", got)
	}
	if got := float64(dev.writes) / n; got > 6 {
		t.Errorf("%.2f device writes per commit, want at most 6", got)
	}
	if dev.Size() != sizeAfter1000 || dev.Size() > 16<<20 {
		t.Errorf("device grew from %d to %d bytes: freed blocks are not reused", sizeAfter1000, dev.Size())
	}
	if r := Fsck(dev); !r.OK() {
		t.Fatal(r)
	}
}

// TestReaderPinsBlocks: blocks freed by a commit are not reused while a
// reader that began before it can still see them.
func TestReaderPinsBlocks(t *testing.T) {
	dev := NewMemDevice(nil)
	s, _ := Create(dev)
	old := benchData(64 * BlockSize)
	err := s.Update(func(tx *Tx) error {
		o, _ := tx.Create("a")
		_, err := o.WriteAt(old, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := s.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	// Delete it and write much more than its size, many times over.
	s.Update(func(tx *Tx) error { return tx.Delete("a") })
	for i := 0; i < 50; i++ {
		err := s.Update(func(tx *Tx) error {
			tx.Delete("b")
			o, err := tx.Create("b")
			if err != nil {
				return err
			}
			_, err = o.WriteAt(bytes.Repeat([]byte{byte(i)}, 200*BlockSize), 0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := readAll(reader, "a")
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("reader lost its view: %v", err)
	}
	before := dev.Size()
	reader.Abort()
	// Now the space comes back.
	for i := 0; i < 50; i++ {
		s.Update(func(tx *Tx) error {
			tx.Delete("b")
			o, _ := tx.Create("b")
			_, err := o.WriteAt(bytes.Repeat([]byte{byte(i)}, 200*BlockSize), 0)
			return err
		})
	}
	if dev.Size() > before {
		t.Errorf("device grew from %d to %d after the reader ended", before, dev.Size())
	}
	if r := Fsck(dev); !r.OK() {
		t.Fatal(r)
	}
}
