// Package filedev is a file-backed objstore.BlockDevice for the host:
// pwrite/pread, fdatasync as the flush barrier, sparse growth with
// ftruncate, and a writer lock across processes. The file is a regular
// file or a block device (of fixed size); anything else is refused before
// it is opened.
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
	block    bool  // a block device: its size is fixed
	base     *File // a clone store's base (overlay.go), nil otherwise
	basePath string
	floor    int64        // a clone's device bytes below it (but the superblocks) are base's
	Flushes  atomic.Int64 // number of Flush calls
}

// Options say how to open a file.
type Options struct {
	Create   bool // create the file; fail if it exists
	ReadOnly bool // open without the writer lock; writes fail
	// Shared, with ReadOnly, takes the lock shared: the open fails with
	// *LockedError while a writer holds the store, and writers fail while
	// it is open. A reader that must not see the file change under it
	// (the host's view of a VM's disk) opens so.
	Shared bool
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

// NotFileError is returned for a path that is neither a regular file nor
// a block device (a directory, a named pipe, a character device, a
// socket): a store cannot live there, and opening a named pipe would wait
// for a writer forever.
type NotFileError struct {
	Path string
	Mode os.FileMode
}

func (e *NotFileError) Error() string {
	return fmt.Sprintf("%s is %s: a store must be a regular file or a block device", e.Path, describe(e.Mode))
}

func describe(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

func usable(m os.FileMode) bool {
	return m.IsRegular() || (m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0)
}

// Open opens (or creates) path, which must be a regular file or a block
// device: anything else fails with *NotFileError before it is opened (and
// again after, should it have been replaced in between), so a named pipe
// cannot block the open. A block device's size is fixed: Grow past it
// fails. A writable open takes the store's writer lock, failing with
// *LockedError if another open file holds it.
func Open(path string, o Options) (*File, error) {
	flag := unix.O_RDWR
	switch {
	case o.Create:
		flag |= unix.O_CREAT | unix.O_EXCL
	case o.ReadOnly:
		flag = unix.O_RDONLY
	}
	if st, err := os.Stat(path); err == nil && !usable(st.Mode()) {
		return nil, &NotFileError{path, st.Mode()}
	}
	// O_NONBLOCK: should the path have become a named pipe since the
	// Stat, the open returns at once and the Fstat below refuses it.
	fd, err := unix.Open(path, flag|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fail := func(err error) (*File, error) {
		f.Close()
		if o.Create {
			os.Remove(path)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !usable(st.Mode()) {
		return fail(&NotFileError{path, st.Mode()})
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(fmt.Errorf("%s: %w", path, err))
	}
	d := &File{f: f, readOnly: o.ReadOnly && !o.Create, block: !st.Mode().IsRegular()}
	if !d.readOnly || o.Shared {
		if err := lockFile(f, path, !d.readOnly); err != nil {
			return fail(err)
		}
	}
	size := st.Size()
	if d.block {
		// A block device's Stat size is 0; its end is its size.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return fail(fmt.Errorf("%s: size of the block device: %w", path, err))
		}
	}
	d.size.Store(size)
	if !d.block && !o.Create && isOverlay(f, size) {
		if err := d.openOverlay(path, size); err != nil {
			return fail(err)
		}
	}
	return d, nil
}

// Stat returns the open file's FileInfo (so a caller can tell whether
// another path names the same file).
func (d *File) Stat() (os.FileInfo, error) { return d.f.Stat() }

// LockFile takes the store lock on the open file f (named path in
// errors), exclusive for a writer (f open for writing) or shared for a
// reader, until f is closed: *LockedError if another open file holds it
// in a conflicting mode. The lock is advisory, on bytes past nothing in
// particular (an open file description's lock, so two opens in one
// process conflict too): the VMM holds it on a raw disk image for a run,
// which filedev.Open would otherwise know nothing of.
func LockFile(f *os.File, exclusive bool) error { return lockFile(f, f.Name(), exclusive) }

func lockFile(f *os.File, path string, exclusive bool) error {
	fd := f.Fd()
	typ := int16(unix.F_RDLCK)
	if exclusive {
		typ = unix.F_WRLCK
	}
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: ofdLockOff, Len: 1}
	if err := unix.FcntlFlock(fd, unix.F_OFD_SETLK, &lk); err != nil {
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%s: lock: %w", path, err)
		}
		q := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: posixLockOff, Len: 1}
		pid := os.Getpid() // a POSIX lock of our own process is invisible to F_GETLK
		if err := unix.FcntlFlock(fd, unix.F_GETLK, &q); err == nil && q.Type != unix.F_UNLCK {
			pid = int(q.Pid)
		}
		return &LockedError{Path: path, PID: pid}
	}
	pl := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: posixLockOff, Len: 1}
	_ = unix.FcntlFlock(fd, unix.F_SETLK, &pl) // only tells others our pid
	return nil
}

// ReadAt implements objstore.BlockDevice.
func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if d.base != nil {
		return d.rw(p, off, false)
	}
	return d.f.ReadAt(p, off)
}

// WriteAt implements objstore.BlockDevice.
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, errors.New("filedev: read-only")
	}
	if d.base != nil {
		return d.rw(p, off, true)
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
	if d.block {
		return fmt.Errorf("%s: the block device is full (%d bytes; the store needs %d)", d.f.Name(), d.size.Load(), size)
	}
	fileSize := size
	if d.base != nil {
		fileSize = size - d.floor + headerBlocks*blockSize
	}
	if err := d.f.Truncate(fileSize); err != nil {
		return err
	}
	d.size.Store(size)
	return nil
}

// Close closes the file, releasing the writer lock.
func (d *File) Close() error {
	err := d.f.Close()
	if berr := d.closeBase(); err == nil {
		err = berr
	}
	return err
}

// Name returns the file's path.
func (d *File) Name() string { return d.f.Name() }

// Fd returns the file's descriptor, valid until Close: data blocks are
// whole pages at offsets Object.Extents gives, so a caller can mmap them
// (whole-VM snapshot restore maps guest memory this way). For a clone
// store device offsets are not file offsets: use MapRange.
func (d *File) Fd() uintptr { return d.f.Fd() }
