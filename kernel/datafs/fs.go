// Package datafs is Amber's persistent file system: files and directories
// in an objstore store on the guest's disk, served to the program at
// /data by a service goroutine (serve.go; docs/kernel.md, "Persistent
// files"), and readable and writable on the host by `vmm store` (FS).
//
// The mapping onto objstore's flat names:
//
//	m/PATH    metadata of the file or directory PATH (relative to the
//	          root, no leading slash): mode with type bits, inode
//	          number, atime, mtime, ctime (40 bytes, little endian)
//	f/PATH    the contents of regular file PATH, nothing else, so `vmm
//	          store get` and Clone work on it as on any object; for a
//	          symbolic link, its target
//	o/INO     the contents of a file unlinked while open, deleted at its
//	          last close or at the next mount
//	s/datafs  the format's mark: "amber-datafs 1\n" and the next inode
//	          number
//
// The root directory has no m/ object. A directory's entries are the m/
// objects one level below it, found with objstore's prefix listing.
//
// Every change goes into one long write transaction, committed by Sync
// (fsync, fdatasync, syncfs, a directory's fsync: all the same), every
// five seconds by the service, and when a transaction has written 64 MiB.
// A crash therefore loses what was written since the last commit and
// nothing committed: each fsync that returned is durable with everything
// before it, which is ext4's data=ordered and more.
package datafs

import (
	"encoding/binary"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amberos/amber/objstore"
)

const (
	superName = "s/datafs"
	magic     = "amber-datafs 1\n"
	metaSize  = 40
	// maxTxBytes: a transaction that has written this much is committed
	// (it keeps its dirty blocks' metadata in memory until then).
	maxTxBytes = 64 << 20
)

// Meta is a file's or directory's metadata.
type Meta struct {
	Mode                uint32 // syscall.S_IF* | permissions
	Ino                 uint64
	Atime, Mtime, Ctime int64 // ns since the epoch
}

func (m Meta) IsDir() bool { return m.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// IsLink reports whether the entry is a symbolic link (its f/ object
// holds the target).
func (m Meta) IsLink() bool { return m.Mode&syscall.S_IFMT == syscall.S_IFLNK }

func (m Meta) encode() []byte {
	b := make([]byte, metaSize)
	binary.LittleEndian.PutUint32(b[0:], m.Mode)
	binary.LittleEndian.PutUint64(b[8:], m.Ino)
	binary.LittleEndian.PutUint64(b[16:], uint64(m.Atime))
	binary.LittleEndian.PutUint64(b[24:], uint64(m.Mtime))
	binary.LittleEndian.PutUint64(b[32:], uint64(m.Ctime))
	return b
}

func decodeMeta(b []byte) Meta {
	return Meta{
		Mode:  binary.LittleEndian.Uint32(b[0:]),
		Ino:   binary.LittleEndian.Uint64(b[8:]),
		Atime: int64(binary.LittleEndian.Uint64(b[16:])),
		Mtime: int64(binary.LittleEndian.Uint64(b[24:])),
		Ctime: int64(binary.LittleEndian.Uint64(b[32:])),
	}
}

// ErrNotDataFS: the store holds objects but not this file system.
var ErrNotDataFS = errors.New("datafs: the store holds other objects, not a datafs file system")

// FS is a datafs file system in an open store. It is not safe for
// concurrent use.
type FS struct {
	s        *objstore.Store
	tx       *objstore.Tx
	ro       bool
	nextIno  uint64
	txBytes  int64
	modified bool
	// Now is the clock for timestamps (time.Now by default).
	Now func() int64
}

// rootIno is the root directory's inode number; others count from 2.
const rootIno = 1

// Open opens the file system in store s, making it when the store is
// empty (unless readonly). A store with other objects is ErrNotDataFS.
func Open(s *objstore.Store, readonly bool) (*FS, error) {
	fs := &FS{s: s, ro: readonly, Now: func() int64 { return time.Now().UnixNano() }}
	if err := fs.begin(); err != nil {
		return nil, err
	}
	o, err := fs.tx.Open(superName)
	switch {
	case err == nil:
		b := make([]byte, o.Size())
		if _, err := o.ReadAt(b, 0); err != nil && err != io.EOF {
			fs.tx.Abort()
			return nil, err
		}
		if !strings.HasPrefix(string(b), magic) || len(b) < len(magic)+8 {
			fs.tx.Abort()
			return nil, ErrNotDataFS
		}
		fs.nextIno = binary.LittleEndian.Uint64(b[len(magic):])
	case errors.Is(err, objstore.ErrNotFound):
		if fs.tx.Count() != 0 {
			fs.tx.Abort()
			return nil, ErrNotDataFS
		}
		if readonly {
			fs.tx.Abort()
			return nil, syscall.EROFS
		}
		fs.nextIno = rootIno + 1
		if err := fs.putSuper(); err != nil {
			fs.tx.Abort()
			return nil, err
		}
		if err := fs.Sync(); err != nil {
			return nil, err
		}
	default:
		fs.tx.Abort()
		return nil, err
	}
	if !readonly {
		// Files unlinked while open when the last session ended.
		var orphans []string
		fs.tx.List("o/", func(i objstore.ObjectInfo) error { orphans = append(orphans, i.Name); return nil })
		for _, n := range orphans {
			fs.tx.Delete(n)
			fs.modified = true
		}
	}
	return fs, nil
}

func (fs *FS) begin() error {
	tx, err := fs.s.Begin(!fs.ro)
	if err != nil {
		return err
	}
	fs.tx, fs.txBytes, fs.modified = tx, 0, false
	return nil
}

func (fs *FS) putSuper() error {
	b := append([]byte(magic), make([]byte, 8)...)
	binary.LittleEndian.PutUint64(b[len(magic):], fs.nextIno)
	o, err := fs.tx.Open(superName)
	if errors.Is(err, objstore.ErrNotFound) {
		o, err = fs.tx.Create(superName)
	}
	if err != nil {
		return err
	}
	_, err = o.WriteAt(b, 0)
	return err
}

// Sync commits everything written so far: durable when it returns.
func (fs *FS) Sync() error {
	if fs.ro {
		return nil
	}
	if !fs.modified {
		return nil
	}
	if err := fs.putSuper(); err != nil {
		return err
	}
	if err := fs.tx.Commit(); err != nil {
		fs.tx = nil
		return err
	}
	return fs.begin()
}

// Dirty reports whether there is anything to commit.
func (fs *FS) Dirty() bool { return fs.modified }

// Close commits and ends the file system's use of the store.
func (fs *FS) Close() error {
	err := fs.Sync()
	if fs.tx != nil {
		fs.tx.Abort()
		fs.tx = nil
	}
	return err
}

// Abort ends the file system's use of the store, dropping everything
// not yet committed.
func (fs *FS) Abort() {
	if fs.tx != nil {
		fs.tx.Abort()
		fs.tx = nil
	}
}

// Clean turns a path (absolute or relative to the root, "." and ".."
// resolved lexically, ".." at the root staying there) into the form the
// names use: "" for the root, "a/b" otherwise.
func Clean(p string) string {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/")
}

func parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// errno maps objstore's errors onto the ones a file system call returns
// (a syscall.Errno, or nil).
func errno(err error) error {
	if err == nil {
		return nil
	}
	return toErrno(err)
}

func toErrno(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, objstore.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, objstore.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, objstore.ErrBadName):
		return syscall.ENAMETOOLONG
	case errors.Is(err, objstore.ErrReadOnly):
		return syscall.EROFS
	case strings.Contains(err.Error(), "no space"), strings.Contains(err.Error(), "ENOSPC"):
		return syscall.ENOSPC
	}
	return syscall.EIO
}

// Stat returns the metadata of p and, for a file, its size.
func (fs *FS) Stat(p string) (Meta, int64, error) {
	if p == "" {
		return Meta{Mode: syscall.S_IFDIR | 0o755, Ino: rootIno}, 0, nil
	}
	o, err := fs.tx.Open("m/" + p)
	if err != nil {
		return Meta{}, 0, errno(err)
	}
	b := make([]byte, metaSize)
	if _, err := o.ReadAt(b, 0); err != nil && err != io.EOF {
		return Meta{}, 0, errno(err)
	}
	m := decodeMeta(b)
	if m.IsDir() {
		return m, 0, nil
	}
	fi, err := fs.tx.Stat("f/" + p)
	if err != nil {
		return m, 0, errno(err)
	}
	return m, fi.Size, nil
}

func (fs *FS) putMeta(p string, m Meta) error {
	o, err := fs.tx.Open("m/" + p)
	if errors.Is(err, objstore.ErrNotFound) {
		o, err = fs.tx.Create("m/" + p)
	}
	if err != nil {
		return errno(err)
	}
	fs.modified = true
	_, err = o.WriteAt(m.encode(), 0)
	return errno(err)
}

// dirOf checks that p's parent is a directory.
func (fs *FS) dirOf(p string) error {
	m, _, err := fs.Stat(parent(p))
	if err != nil {
		return err
	}
	if !m.IsDir() {
		return syscall.ENOTDIR
	}
	return nil
}

func (fs *FS) writable() error {
	if fs.ro {
		return syscall.EROFS
	}
	return nil
}

// Create makes an empty regular file p with permissions perm; EEXIST if
// p exists.
func (fs *FS) Create(p string, perm uint32) (Meta, error) {
	if err := fs.writable(); err != nil {
		return Meta{}, err
	}
	if p == "" {
		return Meta{}, syscall.EEXIST
	}
	if err := fs.dirOf(p); err != nil {
		return Meta{}, err
	}
	if _, _, err := fs.Stat(p); err == nil {
		return Meta{}, syscall.EEXIST
	}
	now := fs.Now()
	m := Meta{Mode: syscall.S_IFREG | perm&0o7777, Ino: fs.nextIno, Atime: now, Mtime: now, Ctime: now}
	fs.nextIno++
	if _, err := fs.tx.Create("f/" + p); err != nil {
		return Meta{}, errno(err)
	}
	if err := fs.putMeta(p, m); err != nil {
		return Meta{}, err
	}
	fs.touchDir(parent(p))
	return m, nil
}

// Symlink makes p a symbolic link to target.
func (fs *FS) Symlink(p, target string) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if p == "" {
		return syscall.EEXIST
	}
	if err := fs.dirOf(p); err != nil {
		return err
	}
	if _, _, err := fs.Stat(p); err == nil {
		return syscall.EEXIST
	}
	now := fs.Now()
	m := Meta{Mode: syscall.S_IFLNK | 0o777, Ino: fs.nextIno, Atime: now, Mtime: now, Ctime: now}
	fs.nextIno++
	o, err := fs.tx.Create("f/" + p)
	if err != nil {
		return errno(err)
	}
	if _, err := o.WriteAt([]byte(target), 0); err != nil {
		return errno(err)
	}
	if err := fs.putMeta(p, m); err != nil {
		return err
	}
	fs.touchDir(parent(p))
	return nil
}

// Mkdir makes directory p.
func (fs *FS) Mkdir(p string, perm uint32) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if p == "" {
		return syscall.EEXIST
	}
	if err := fs.dirOf(p); err != nil {
		return err
	}
	if _, _, err := fs.Stat(p); err == nil {
		return syscall.EEXIST
	}
	now := fs.Now()
	m := Meta{Mode: syscall.S_IFDIR | perm&0o7777, Ino: fs.nextIno, Atime: now, Mtime: now, Ctime: now}
	fs.nextIno++
	if err := fs.putMeta(p, m); err != nil {
		return err
	}
	fs.touchDir(parent(p))
	return nil
}

// touchDir sets a directory's mtime and ctime after a change of its
// entries.
func (fs *FS) touchDir(d string) {
	if d == "" {
		return
	}
	if m, _, err := fs.Stat(d); err == nil {
		m.Mtime = fs.Now()
		m.Ctime = m.Mtime
		fs.putMeta(d, m)
	}
}

// Entry is a directory entry.
type Entry struct {
	Name string
	Meta Meta
	Size int64
}

// ReadDir lists directory d's entries in name order.
func (fs *FS) ReadDir(d string) ([]Entry, error) {
	m, _, err := fs.Stat(d)
	if err != nil {
		return nil, err
	}
	if !m.IsDir() {
		return nil, syscall.ENOTDIR
	}
	prefix := "m/"
	if d != "" {
		prefix += d + "/"
	}
	var ents []Entry
	err = fs.tx.List(prefix, func(i objstore.ObjectInfo) error {
		name := i.Name[len(prefix):]
		if name == "" || strings.IndexByte(name, '/') >= 0 {
			return nil
		}
		ents = append(ents, Entry{Name: name})
		return nil
	})
	if err != nil {
		return nil, errno(err)
	}
	for k := range ents {
		p := ents[k].Name
		if d != "" {
			p = d + "/" + p
		}
		ents[k].Meta, ents[k].Size, _ = fs.Stat(p)
	}
	return ents, nil
}

// children reports whether directory d has entries.
func (fs *FS) children(d string) (bool, error) {
	found := false
	err := fs.tx.List("m/"+d+"/", func(objstore.ObjectInfo) error {
		found = true
		return io.EOF
	})
	if err == io.EOF {
		err = nil
	}
	return found, errno(err)
}

// Remove removes file p (dir false) or empty directory p (dir true).
// The content of a file still open elsewhere is kept as orphan: keep
// says under which name (orphanName), "" to delete it.
func (fs *FS) Remove(p string, dir bool, keep string) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if p == "" {
		return syscall.EBUSY
	}
	m, _, err := fs.Stat(p)
	if err != nil {
		return err
	}
	if dir {
		if !m.IsDir() {
			return syscall.ENOTDIR
		}
		if has, err := fs.children(p); err != nil {
			return err
		} else if has {
			return syscall.ENOTEMPTY
		}
	} else {
		if m.IsDir() {
			return syscall.EISDIR
		}
		if keep != "" {
			err = fs.tx.Rename("f/"+p, keep)
		} else {
			err = fs.tx.Delete("f/" + p)
		}
		if err != nil {
			return errno(err)
		}
	}
	fs.modified = true
	if err := fs.tx.Delete("m/" + p); err != nil {
		return errno(err)
	}
	fs.touchDir(parent(p))
	return nil
}

func orphanName(ino uint64) string { return "o/" + strconv.FormatUint(ino, 10) }

// Rename renames old to new as rename(2) does, in the current
// transaction: a file in O(1) (objstore renames the object), a directory
// by renaming everything below it. noReplace is RENAME_NOREPLACE.
// A replaced file open elsewhere is kept under keep (see Remove).
func (fs *FS) Rename(old, new string, noReplace bool, keep string) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if old == "" || new == "" {
		return syscall.EBUSY
	}
	om, _, err := fs.Stat(old)
	if err != nil {
		return err
	}
	if err := fs.dirOf(new); err != nil {
		return err
	}
	if old == new {
		return nil
	}
	if om.IsDir() && strings.HasPrefix(new+"/", old+"/") {
		return syscall.EINVAL
	}
	if nm, _, err := fs.Stat(new); err == nil {
		if noReplace {
			return syscall.EEXIST
		}
		switch {
		case om.IsDir() && !nm.IsDir():
			return syscall.ENOTDIR
		case !om.IsDir() && nm.IsDir():
			return syscall.EISDIR
		}
		if err := fs.Remove(new, nm.IsDir(), keep); err != nil {
			return err
		}
	} else if err != syscall.ENOENT {
		return err
	}
	fs.modified = true
	if !om.IsDir() {
		if err := fs.tx.Rename("f/"+old, "f/"+new); err != nil {
			return errno(err)
		}
	} else {
		var names []string
		for _, pre := range []string{"m/" + old + "/", "f/" + old + "/"} {
			err := fs.tx.List(pre, func(i objstore.ObjectInfo) error { names = append(names, i.Name); return nil })
			if err != nil {
				return errno(err)
			}
		}
		for _, n := range names {
			if err := fs.tx.Rename(n, n[:2]+new+n[2+len(old):]); err != nil {
				return errno(err)
			}
		}
	}
	om.Ctime = fs.Now()
	if err := fs.tx.Rename("m/"+old, "m/"+new); err != nil {
		return errno(err)
	}
	if err := fs.putMeta(new, om); err != nil {
		return err
	}
	fs.touchDir(parent(old))
	fs.touchDir(parent(new))
	return nil
}

// SetMeta changes p's permissions (mode >= 0) and times (utimeOmit keeps
// one).
func (fs *FS) SetMeta(p string, mode int64, atime, mtime int64) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if p == "" {
		return nil // the root's metadata is fixed
	}
	m, _, err := fs.Stat(p)
	if err != nil {
		return err
	}
	if mode >= 0 {
		if m.IsLink() {
			// Reached only unfollowed (fchmodat2's AT_SYMLINK_NOFOLLOW):
			// a symlink's mode does not change on Linux.
			return syscall.EOPNOTSUPP
		}
		m.Mode = m.Mode&syscall.S_IFMT | uint32(mode)&0o7777
	}
	if atime != UtimeOmit {
		m.Atime = atime
	}
	if mtime != UtimeOmit {
		m.Mtime = mtime
	}
	m.Ctime = fs.Now()
	return fs.putMeta(p, m)
}

// UtimeOmit in SetMeta keeps a time (utimensat's UTIME_OMIT).
const UtimeOmit = 1<<30 - 2

// object opens a file's content object (f/PATH or an orphan).
func (fs *FS) object(name string) (*objstore.Object, error) {
	o, err := fs.tx.Open(name)
	if err != nil {
		return nil, errno(err)
	}
	return o, nil
}

// ReadAt reads the content object name (f/PATH) at off: the count, 0 at
// the end.
func (fs *FS) ReadAt(name string, b []byte, off int64) (int, error) {
	o, err := fs.object(name)
	if err != nil {
		return 0, err
	}
	if off >= o.Size() {
		return 0, nil
	}
	if rest := o.Size() - off; int64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := o.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return n, errno(err)
}

// WriteAt writes to the content object name at off (off < 0: at the
// end); the count and the offset after the write.
func (fs *FS) WriteAt(name string, b []byte, off int64) (int, int64, error) {
	if err := fs.writable(); err != nil {
		return 0, 0, err
	}
	o, err := fs.object(name)
	if err != nil {
		return 0, 0, err
	}
	if off < 0 {
		off = o.Size()
	}
	fs.modified = true
	n, err := o.WriteAt(b, off)
	fs.txBytes += int64(n)
	return n, off + int64(n), errno(err)
}

// Truncate sets the size of the content object name.
func (fs *FS) Truncate(name string, size int64) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if size < 0 {
		return syscall.EINVAL
	}
	o, err := fs.object(name)
	if err != nil {
		return err
	}
	fs.modified = true
	return errno(o.Truncate(size))
}

// Touch sets p's mtime and ctime to now (after writes).
func (fs *FS) Touch(p string) {
	if p == "" || fs.ro {
		return
	}
	if m, _, err := fs.Stat(p); err == nil {
		m.Mtime = fs.Now()
		m.Ctime = m.Mtime
		fs.putMeta(p, m)
	}
}

// Big reports whether the transaction has written enough to commit.
func (fs *FS) Big() bool { return fs.txBytes >= maxTxBytes }

// WriteFile makes or replaces file p with data (the host's put).
func (fs *FS) WriteFile(p string, data []byte, perm uint32) error {
	p = Clean(p)
	if m, _, err := fs.Stat(p); err == nil {
		if m.IsDir() {
			return syscall.EISDIR
		}
		if err := fs.Truncate("f/"+p, 0); err != nil {
			return err
		}
	} else if _, err := fs.Create(p, perm); err != nil {
		return err
	}
	if _, _, err := fs.WriteAt("f/"+p, data, 0); err != nil {
		return err
	}
	fs.Touch(p)
	return nil
}

// ReadFile returns file p's contents (the host's get).
func (fs *FS) ReadFile(p string) ([]byte, error) {
	p = Clean(p)
	m, size, err := fs.Stat(p)
	if err != nil {
		return nil, err
	}
	if m.IsDir() {
		return nil, syscall.EISDIR
	}
	b := make([]byte, size)
	n, err := fs.ReadAt("f/"+p, b, 0)
	return b[:n], err
}

// Walk calls fn for every file and directory below d (d itself
// excluded), parents before children, in name order.
func (fs *FS) Walk(d string, fn func(p string, m Meta, size int64) error) error {
	ents, err := fs.ReadDir(d)
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	for _, e := range ents {
		p := e.Name
		if d != "" {
			p = d + "/" + p
		}
		if err := fn(p, e.Meta, e.Size); err != nil {
			return err
		}
		if e.Meta.IsDir() {
			if err := fs.Walk(p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
