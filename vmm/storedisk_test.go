package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
)

// The store backend: writes are visible at once, durable at a flush
// (commit), and committed at Close; the store stays clean.
func TestStoreDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.store")
	if err := CreateStoreDisk(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !IsStoreDisk(path) {
		t.Fatal("IsStoreDisk: false for a store")
	}
	// A store without the disk object (as the guest's /data keeps on a
	// raw disk) is a raw disk.
	guestFS := filepath.Join(t.TempDir(), "data.raw")
	gd, err := filedev.Open(guestFS, filedev.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	objstore.Create(gd)
	gd.Close()
	if IsStoreDisk(guestFS) {
		t.Fatal("IsStoreDisk: true for a store without vm/disk")
	}
	raw := filepath.Join(t.TempDir(), "d.raw")
	os.WriteFile(raw, make([]byte, 4096), 0o644)
	if IsStoreDisk(raw) {
		t.Fatal("IsStoreDisk: true for a raw disk")
	}
	d, err := OpenStoreDisk(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size() != 1<<20 {
		t.Fatalf("size %d", d.Size())
	}
	buf := make([]byte, 4096)
	if _, err := d.ReadAt(buf, 8192); err != nil || !bytes.Equal(buf, make([]byte, 4096)) {
		t.Fatalf("fresh disk: %v", err)
	}
	data := bytes.Repeat([]byte("amber!"), 1000)[:4096]
	if _, err := d.WriteAt(data, 512); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(buf, 512); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read before flush: %v", err)
	}
	// A read-only open (a VM, or vmm store get) is refused while a VM
	// writes the disk: the disk's lock.
	if r, err := OpenStoreDisk(path, true); err == nil || !strings.Contains(err.Error(), "in use by pid") {
		if r != nil {
			r.Close()
		}
		t.Fatalf("read-only open while a writer runs: %v", err)
	}
	// The store file read without the lock holds only committed data:
	// nothing yet.
	peek := func() []byte {
		dev, err := filedev.Open(path, filedev.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		s, err := objstore.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b := make([]byte, 4096)
		if err := s.View(func(tx *objstore.Tx) error {
			o, err := tx.Open(StoreDiskObject)
			if err != nil {
				return err
			}
			_, err = readFull(o, b, 512)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if bytes.Equal(peek(), data) {
		t.Fatal("unflushed write visible to another open")
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(peek(), data) {
		t.Fatal("flushed write not visible")
	}
	d.WriteAt(make([]byte, 512), 512) // committed by Close
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := peek(); !bytes.Equal(got[:512], make([]byte, 512)) || !bytes.Equal(got[512:], data[512:]) {
		t.Fatal("write before Close not committed")
	}
	r, err := OpenStoreDisk(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt(data, 0); err == nil {
		t.Error("write to a read-only store disk")
	}
	if _, err := OpenStoreDisk(path, false); err == nil || !strings.Contains(err.Error(), "in use by pid") {
		t.Errorf("writable open while a read-only VM runs: %v", err)
	}
	r.Close()
	// A VMM killed with writes not flushed: they are gone, the flushed
	// ones are there, and the store is clean.
	d, err = OpenStoreDisk(path, false)
	if err != nil {
		t.Fatal(err)
	}
	flushed := bytes.Repeat([]byte{0x11}, 4096)
	d.WriteAt(flushed, 512)
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	d.WriteAt(bytes.Repeat([]byte{0x22}, 8192), 0)
	d.(*storeDisk).dev.Close() // no commit, as at a kill -9
	if got := peek(); !bytes.Equal(got, flushed) {
		t.Fatal("after the kill: not the flushed data")
	}
	dev, err := filedev.Open(path, filedev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if r := objstore.Fsck(dev); !r.OK() {
		t.Fatal(r)
	}
	// A store without a disk object, and bad sizes.
	empty := filepath.Join(t.TempDir(), "empty.store")
	fd, _ := filedev.Open(empty, filedev.Options{Create: true})
	objstore.Create(fd)
	fd.Close()
	if _, err := OpenStoreDisk(empty, false); err == nil || !strings.Contains(err.Error(), "--disk-size") {
		t.Errorf("store without a disk: %v", err)
	}
	if err := CreateStoreDisk(filepath.Join(t.TempDir(), "x"), 1000); err == nil {
		t.Error("disk of 1000 bytes created")
	}
}
