package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
)

// A disk kept as an object in an objstore store file: the disk's bytes
// are the object StoreDiskObject, so the store can hold snapshots of the
// disk beside it (Clone) and `vmm store` sees it while the VM is stopped.
//
// The device has a volatile write cache, as the FLUSH feature says:
// writes go into one open write transaction, reads see them, and a flush
// commits it (durable when Commit returns). Writes not flushed when the
// VMM is killed are gone, as from a disk's cache at a power cut; the
// store itself stays consistent (a commit is all or nothing).

// StoreDiskObject is the name of the disk object in a store file.
const StoreDiskObject = "vm/disk"

// IsStoreDisk reports whether path is a store file holding a disk object
// (StoreDiskObject): --disk then names a store, not a raw image. A raw
// disk whose guest keeps an objstore store on it (/data) starts with the
// same superblock, but has no such object.
func IsStoreDisk(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	var b [8]byte
	magic := false
	for _, off := range []int64{0, 4096} {
		if _, err := f.ReadAt(b[:], off); err == nil && bytes.Equal(b[:], []byte("AMBRSTOR")) {
			magic = true
		}
	}
	f.Close()
	if !magic {
		return false
	}
	dev, err := filedev.Open(path, filedev.Options{ReadOnly: true})
	if err != nil {
		return false
	}
	defer dev.Close()
	s, err := objstore.Open(dev)
	if err != nil {
		return false
	}
	defer s.Close()
	return s.View(func(tx *objstore.Tx) error {
		_, err := tx.Stat(StoreDiskObject)
		return err
	}) == nil
}

type storeDisk struct {
	dev  *filedev.File
	s    *objstore.Store
	size int64
	ro   bool

	mu  sync.Mutex
	tx  *objstore.Tx // the writes since the last flush; nil: none
	obj *objstore.Object
}

// OpenStoreDisk opens the disk object of the store file at path. A
// writable open holds the store's writer lock until Close, a read-only
// one the lock shared (no writer while the disk is read).
func OpenStoreDisk(path string, readOnly bool) (BlockBackend, error) {
	dev, err := filedev.Open(path, filedev.Options{ReadOnly: readOnly, Shared: true})
	if err != nil {
		return nil, InUse(err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var size int64
	err = s.View(func(tx *objstore.Tx) error {
		info, err := tx.Stat(StoreDiskObject)
		size = info.Size
		return err
	})
	if err == nil && (size <= 0 || size%blkSector != 0) {
		err = fmt.Errorf("its %s object has %d bytes, not a non-empty whole number of 512-byte sectors", StoreDiskObject, size)
	}
	if err != nil {
		s.Close()
		dev.Close()
		return nil, fmt.Errorf("%s: no disk: %w (make one with vmm store create --disk-size SIZE)", path, err)
	}
	return &storeDisk{dev: dev, s: s, size: size, ro: readOnly}, nil
}

// CreateStoreDisk creates a store file holding an empty (all-zero) disk
// of size bytes.
func CreateStoreDisk(path string, size int64) error {
	if size <= 0 || size%blkSector != 0 {
		return fmt.Errorf("disk size %d is not a positive multiple of 512 bytes", size)
	}
	dev, err := filedev.Open(path, filedev.Options{Create: true})
	if err != nil {
		return err
	}
	defer dev.Close()
	s, err := objstore.Create(dev)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Update(func(tx *objstore.Tx) error {
		o, err := tx.Create(StoreDiskObject)
		if err != nil {
			return err
		}
		return o.Truncate(size) // a hole: reads as zeros, takes no space
	})
}

func (d *storeDisk) Size() int64 { return d.size }

func (d *storeDisk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tx != nil {
		return readFull(d.obj, p, off)
	}
	var n int
	err := d.s.View(func(tx *objstore.Tx) error {
		o, err := tx.Open(StoreDiskObject)
		if err != nil {
			return err
		}
		n, err = readFull(o, p, off)
		return err
	})
	return n, err
}

func readFull(o *objstore.Object, p []byte, off int64) (int, error) {
	n, err := o.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	return n, err
}

func (d *storeDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.ro {
		return 0, errors.New("read-only disk")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tx == nil {
		tx, err := d.s.Begin(true)
		if err != nil {
			return 0, err
		}
		o, err := tx.Open(StoreDiskObject)
		if err != nil {
			tx.Abort()
			return 0, err
		}
		d.tx, d.obj = tx, o
	}
	return d.obj.WriteAt(p, off)
}

// Flush commits the writes since the last flush.
func (d *storeDisk) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tx == nil {
		return nil
	}
	tx := d.tx
	d.tx, d.obj = nil, nil
	return tx.Commit()
}

// Close commits the writes not flushed yet, as a disk writes back its
// cache at an orderly power-off (the VM has ended, whatever the guest
// left). A VMM killed before has no Close: those writes are lost.
func (d *storeDisk) Close() error {
	err := d.Flush()
	return errors.Join(err, d.s.Close(), d.dev.Close())
}
