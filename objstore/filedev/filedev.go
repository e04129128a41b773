// Package filedev is a file-backed objstore.BlockDevice for the host:
// pwrite/pread, fdatasync as the flush barrier, sparse growth with
// ftruncate, and a writer lock across processes.
package filedev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// File is a store file opened as a block device.
type File struct {
	f        *os.File
	size     atomic.Int64
	readOnly bool
	Flushes  atomic.Int64 // number of Flush calls
}

// Options say how to open a file.
type Options struct {
	Create   bool // create the file; fail if it exists
	ReadOnly bool // open without the writer lock; writes fail
}

// LockedError is returned when another writer holds the store.
type LockedError struct {
	Path string
	PID  int
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s: store is locked by pid %d", e.Path, e.PID)
}

// Lock ranges (advisory, past any data): an open-file-description lock for
// exclusion, and a classic POSIX lock whose holder's pid F_GETLK reports.
const (
	ofdLockOff   = 0
	posixLockOff = 1
)

// Open opens (or creates) path. A writable open takes the store's writer
// lock, failing with *LockedError if another open file holds it.
func Open(path string, o Options) (*File, error) {
	flag := os.O_RDWR
	switch {
	case o.Create:
		flag |= os.O_CREATE | os.O_EXCL
	case o.ReadOnly:
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return nil, err
	}
	d := &File{f: f, readOnly: o.ReadOnly && !o.Create}
	if !d.readOnly {
		if err := d.lock(path); err != nil {
			f.Close()
			if o.Create {
				os.Remove(path)
			}
			return nil, err
		}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	d.size.Store(st.Size())
	return d, nil
}

func (d *File) lock(path string) error {
	fd := int(d.f.Fd())
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: ofdLockOff, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err != nil {
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%s: lock: %w", path, err)
		}
		q := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: posixLockOff, Len: 1}
		pid := os.Getpid() // a POSIX lock of our own process is invisible to F_GETLK
		if err := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &q); err == nil && q.Type != unix.F_UNLCK {
			pid = int(q.Pid)
		}
		return &LockedError{Path: path, PID: pid}
	}
	pl := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: posixLockOff, Len: 1}
	_ = unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &pl) // only tells others our pid
	return nil
}

// ReadAt implements objstore.BlockDevice.
func (d *File) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt implements objstore.BlockDevice.
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, errors.New("filedev: read-only")
	}
	return d.f.WriteAt(p, off)
}

// Flush implements objstore.BlockDevice with fdatasync.
func (d *File) Flush() error {
	d.Flushes.Add(1)
	if d.readOnly {
		return nil
	}
	return unix.Fdatasync(int(d.f.Fd()))
}

// Size implements objstore.BlockDevice.
func (d *File) Size() int64 { return d.size.Load() }

// Grow implements objstore.BlockDevice: the file grows sparsely.
func (d *File) Grow(size int64) error {
	if size <= d.size.Load() {
		return nil
	}
	if d.readOnly {
		return errors.New("filedev: read-only")
	}
	if err := d.f.Truncate(size); err != nil {
		return err
	}
	d.size.Store(size)
	return nil
}

// Close closes the file, releasing the writer lock.
func (d *File) Close() error { return d.f.Close() }

// Name returns the file's path.
func (d *File) Name() string { return d.f.Name() }
