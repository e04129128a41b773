package datafs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/amberos/amber/kernel/service"
	"github.com/amberos/amber/objstore"
)

// The guest side: the service that serves /data to the program.

// Operations of a call: kernel/datafile.go's d* list.
const (
	dOpen = iota + 1
	dStat
	dMkdir
	dUnlink
	dRename
	dChmod
	dUtimes
	dTruncate
	dAccess
	dChdir
	dRead
	dWrite
	dGetdents
	dSync
	dGetcwd
	dReadlink
	dStatfs
	dSymlink
)

const maxPathLen = 4096

// callArgs is the core's dataArgsT, field for field.
type callArgs struct {
	Op, Flags   uint32
	Node, Node2 uint64
	Off         int64
	Buf         unsafe.Pointer // the program's buffer, checked by the core
	N           uint64
	Mode        uint32
	Plen, Plen2 uint32
	Follow      uint32
	A, M        int64
	St          syscall.Stat_t
	Path        [maxPathLen + 1]byte
	Path2       [maxPathLen + 1]byte
}

// The core's dataArgsT checks the same figures.
var (
	_ [unsafe.Offsetof(callArgs{}.St) - 80]byte
	_ [80 - unsafe.Offsetof(callArgs{}.St)]byte
	_ [unsafe.Offsetof(callArgs{}.Path2) - 4321]byte
	_ [4321 - unsafe.Offsetof(callArgs{}.Path2)]byte
	_ [unsafe.Sizeof(callArgs{}) - 8424]byte
	_ [8424 - unsafe.Sizeof(callArgs{})]byte
)

// stDev is st_dev of /data's files (the in-memory file system's is 0x2a).
const stDev = 0x2a + 4

// node is a file or directory the program has open (or its working
// directory).
type node struct {
	path    string // "" for the root, or for an orphan
	obj     string // the content object ("f/PATH", an orphan's "o/INO"); "" for a directory
	dir     bool
	meta    Meta // an orphan's metadata
	written bool // mtime to set before the next commit
	// getdents' place: the last name returned and the position after it,
	// so that removals while reading do not skip entries.
	dirLast string
	dirPos  int64
}

type server struct {
	mu    sync.Mutex
	fs    *FS
	q     *service.Queue
	args  *callArgs
	nodes map[uint64]*node
	next  uint64
	ro    bool
	down  bool   // unmounted at exit (AtExit): calls fail with EIO
	mount string // the mount point: an absolute symlink target under it stays on /data
	trace bool   // DATAFS_TRACE set: every call on stderr
}

// vdaDev is the guest's disk as a BlockDevice.
type vdaDev struct {
	f    *os.File
	size int64
}

func (d *vdaDev) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *vdaDev) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }
func (d *vdaDev) Flush() error                             { return d.f.Sync() }
func (d *vdaDev) Size() int64                              { return d.size }
func (d *vdaDev) Grow(size int64) error {
	if size > d.size {
		return fmt.Errorf("datafs: the disk is full (%d bytes): %w", d.size, syscall.ENOSPC)
	}
	return nil
}

// Start mounts the disk's file system and starts serving it, when the
// program runs in Amber with a disk; it reports problems on stderr and
// leaves /data unmounted (the program's calls there fail with ENODEV).
// Package kernel/datafs/mount calls it from its init.
func Start() {
	// Without a disk, nothing: no queue, no netpoller started for it.
	if _, err := os.Stat("/dev/vda"); err != nil {
		return
	}
	q, err := service.Open()
	if err != nil {
		return // not in Amber
	}
	f, err := os.OpenFile("/dev/vda", os.O_RDWR, 0)
	ro := false
	if errors.Is(err, syscall.EROFS) {
		f, err = os.OpenFile("/dev/vda", os.O_RDONLY, 0)
		ro = true
	}
	if err != nil {
		q.Close()
		if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "amber: /data not mounted: %v\n", err)
		}
		return
	}
	// Claim the disk for /data first: amber.data=off leaves it alone.
	args, err := q.MountData()
	if err != nil {
		f.Close()
		q.Close()
		return
	}
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "amber: /data not mounted: "+format+"\n", a...)
		f.Close()
		q.Close() // releases the disk: the program may open /dev/vda
	}
	fi, err := f.Stat()
	if err != nil {
		fail("%v", err)
		return
	}
	dev := &vdaDev{f: f, size: fi.Size()}
	blank, err := isBlank(dev)
	if err != nil {
		fail("reading the disk: %v", err)
		return
	}
	var st *objstore.Store
	if blank {
		if ro {
			fail("the disk is blank and read-only")
			return
		}
		st, err = objstore.Create(dev)
	} else {
		st, err = objstore.Open(dev)
	}
	if err != nil {
		fail("the disk (%d bytes) holds something other than an Amber object store (%v); it is left as it is and stays available as /dev/vda", dev.size, err)
		return
	}
	fs, err := Open(st, ro)
	if err != nil {
		fail("%v; the disk is left as it is", err)
		return
	}
	a := (*callArgs)(args)
	s := &server{fs: fs, q: q, args: a, nodes: map[uint64]*node{}, next: 1, ro: ro, mount: string(a.Path[:a.Plen]), trace: os.Getenv("DATAFS_TRACE") != ""}
	go s.serve()
	if !ro {
		go s.committer()
		mounted = s
	}
}

// mounted is the server of a writable /data, for AtExit.
var mounted *server

// exitWait bounds the commit at exit: a service that hangs (a disk that
// stopped answering) must not keep the VM from powering off.
const exitWait = 30 * time.Second

// AtExit commits /data and unmounts it: what the program wrote without
// fsync survives its exit, as a process's writes outlive it on Linux
// (the page cache reaches the disk) and an orderly shutdown syncs its file
// systems. Package kernel/datafs/mount registers it as an exit hook, which
// the runtime runs when main returns and in os.Exit, before the exit
// system call powers the VM off. The commit runs under the server's lock,
// so a call the service is serving finishes first; calls made after it
// fail with EIO (the file system is unmounted). It waits at most
// exitWait, then says so and lets the exit go on. A read-only /data, or
// none, costs nothing.
func AtExit() {
	s := mounted
	if s == nil {
		return
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		s.mu.Lock()
		if !s.down {
			dirty := s.fs.Dirty()
			if dirty {
				s.commit()
			}
			s.fs.Close()
			s.down = true
			if s.trace {
				fmt.Fprintf(os.Stderr, "datafs: exit: commit (dirty %v) and unmount in %v\n", dirty, time.Since(start))
			}
		}
		s.mu.Unlock()
		close(done)
	}()
	t := time.NewTimer(exitWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		fmt.Fprintf(os.Stderr, "amber: /data: the commit at exit did not finish in %v; exiting without it (what was written since the last commit is lost)\n", exitWait)
	}
}

// isBlank reports whether the disk's first blocks (where a store's
// superblocks are) are all zeros.
func isBlank(d *vdaDev) (bool, error) {
	n := int64(2 * objstore.BlockSize)
	if d.size < n {
		return false, fmt.Errorf("the disk is too small (%d bytes)", d.size)
	}
	b := make([]byte, n)
	if _, err := d.ReadAt(b, 0); err != nil {
		return false, err
	}
	for _, c := range b {
		if c != 0 {
			return false, nil
		}
	}
	return true, nil
}

// committer commits every five seconds what the program wrote without
// fsync, as ext4 does.
func (s *server) committer() {
	for range time.Tick(5 * time.Second) {
		s.mu.Lock()
		if !s.down && s.fs.Dirty() {
			s.commit()
		}
		s.mu.Unlock()
	}
}

func (s *server) commit() error {
	for _, n := range s.nodes {
		if n.written && n.path != "" {
			s.fs.Touch(n.path)
		}
		n.written = false
	}
	if err := s.fs.Sync(); err != nil {
		fmt.Fprintf(os.Stderr, "amber: /data: commit failed: %v\n", err)
		return syscall.EIO
	}
	return nil
}

func (s *server) serve() {
	reqs := make([]service.Request, 32)
	for {
		n, err := s.q.Next(reqs)
		if err != nil {
			fmt.Fprintf(os.Stderr, "amber: /data: the service stopped: %v\n", err)
			return
		}
		for _, r := range reqs[:n] {
			s.mu.Lock()
			switch r.Op {
			case service.Data:
				res := -int64(syscall.EIO)
				if !s.down {
					res = s.call(s.args)
				}
				if s.trace {
					fmt.Fprintf(os.Stderr, "datafs: op %d node %d path %q flags %#x off %d n %d -> %d\n", s.args.Op, s.args.Node, s.args.Path[:s.args.Plen], s.args.Flags, s.args.Off, s.args.N, res)
				}
				s.q.DataDone(r.Seq, res)
			case service.DataClose:
				if !s.down {
					s.close(r.Args[0])
				}
			case service.DataSync:
				if !s.down && s.fs.Dirty() {
					s.commit()
				}
				s.q.DataSynced(r.Seq)
			}
			s.mu.Unlock()
		}
	}
}

func neg(err error) int64 {
	if err == nil {
		return 0
	}
	return -int64(toErrno(err))
}

// resolve turns a call's base node and path into a path of the file
// system, component by component, following symlinks: in every component
// but the last, and in the last too when follow is set or the path ends
// in a slash. The last component may be missing (callers Stat the
// result); a missing one before it is ENOENT, a file there ENOTDIR. ".."
// at the root stays there. A symlink whose target is absolute continues
// from the root when the target lies under the mount point; one that
// leaves /data is EXDEV (the core would have to walk on, which it does
// not do yet).
func (s *server) resolve(base uint64, b []byte, follow bool) (string, bool, error) {
	rel := string(b)
	cur := ""
	if base != 0 {
		n := s.nodes[base]
		if n == nil {
			return "", false, syscall.EBADF
		}
		if !n.dir {
			if rel == "" {
				return "", false, nil // the node itself: callers use it
			}
			return "", false, syscall.ENOTDIR
		}
		cur = n.path
	}
	slash := strings.HasSuffix(rel, "/")
	comps := strings.FieldsFunc(rel, func(r rune) bool { return r == '/' })
	links := 0
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		last := i == len(comps)-1
		switch c {
		case ".":
			continue
		case "..":
			cur = parent(cur)
			continue
		}
		if len(c) > 255 {
			return "", false, syscall.ENAMETOOLONG
		}
		next := c
		if cur != "" {
			next = cur + "/" + c
		}
		if len(next)+2 > 1024 {
			return "", false, syscall.ENAMETOOLONG
		}
		m, _, err := s.fs.Stat(next)
		if err != nil {
			if last {
				return next, slash, nil
			}
			return "", false, err
		}
		if m.IsLink() && (!last || follow || slash) {
			if links++; links > 40 {
				return "", false, syscall.ELOOP
			}
			target, err := s.fs.ReadFile(next)
			if err != nil {
				return "", false, err
			}
			t := string(target)
			if strings.HasPrefix(t, "/") {
				if t != s.mount && !strings.HasPrefix(t, s.mount+"/") || s.mount == "" {
					return "", false, syscall.EXDEV
				}
				t = t[len(s.mount):]
				cur = ""
			}
			if last && strings.HasSuffix(t, "/") {
				slash = true // a target "dir/" must be a directory
			}
			comps = append(strings.FieldsFunc(t, func(r rune) bool { return r == '/' }), comps[i+1:]...)
			i = -1
			if len(comps) == 0 {
				return cur, slash, nil
			}
			continue
		}
		if !last && !m.IsDir() {
			return "", false, syscall.ENOTDIR
		}
		cur = next
	}
	return cur, slash, nil
}

// missing is the error for a path that does not exist: ENOTDIR when a
// component on the way is a file.
func (s *server) missing(p string) error {
	for d := parent(p); ; d = parent(d) {
		if m, _, err := s.fs.Stat(d); err == nil {
			if !m.IsDir() {
				return syscall.ENOTDIR
			}
			return syscall.ENOENT
		}
		if d == "" {
			return syscall.ENOENT
		}
	}
}

func (s *server) newNode(n *node) uint64 {
	id := s.next
	s.next++
	s.nodes[id] = n
	return id
}

// call serves one Data request: its result.
func (s *server) call(a *callArgs) int64 {
	// A call on an open node itself (fstat, read, fsync...).
	var nd *node
	if a.Node != 0 {
		nd = s.nodes[a.Node]
		if nd == nil {
			return -int64(syscall.EBADF)
		}
	}
	switch a.Op {
	case dRead, dWrite, dGetdents, dSync, dGetcwd:
		if nd == nil {
			return -int64(syscall.EBADF)
		}
		return s.nodeCall(a, nd)
	}
	var p string
	var slash bool
	self := nd != nil && a.Plen == 0
	if !self {
		var err error
		p, slash, err = s.resolve(a.Node, a.Path[:a.Plen], a.Follow != 0)
		if err != nil {
			return neg(err)
		}
	} else {
		p = nd.path
	}
	switch a.Op {
	case dOpen:
		return s.open(a, p, slash)
	case dStat:
		if self && nd.obj != "" && nd.path == "" { // an orphan
			return s.fillStat(a, nd.meta, s.size(nd.obj))
		}
		m, size, err := s.fs.Stat(p)
		if err != nil {
			return neg(s.missing(p))
		}
		if slash && !m.IsDir() {
			return -int64(syscall.ENOTDIR)
		}
		return s.fillStat(a, m, size)
	case dMkdir:
		if slash {
			// mkdir never follows a final symlink, "link/" included:
			// the name exists (Linux: EEXIST, dangling or not).
			if q, _, err := s.resolve(a.Node, bytes.TrimRight(a.Path[:a.Plen], "/"), false); err == nil && q != p {
				return -int64(syscall.EEXIST)
			}
		}
		if err := s.fs.Mkdir(p, a.Mode); err != nil {
			if err == syscall.ENOENT {
				err = s.missing(p)
			}
			return neg(err)
		}
		return 0
	case dUnlink:
		const atRemovedir = 0x200
		dir := a.Flags&atRemovedir != 0
		switch lastName(a.Path[:a.Plen]) {
		case ".":
			return -int64(syscall.EINVAL) // rmdir(2)
		case "..":
			return -int64(syscall.ENOTEMPTY)
		}
		if !dir && slash {
			if m, _, err := s.fs.Stat(p); err == nil && m.IsDir() {
				return -int64(syscall.EISDIR)
			}
			return -int64(syscall.ENOTDIR)
		}
		keep := s.orphanFor(p)
		if err := s.fs.Remove(p, dir, keep); err != nil {
			if err == syscall.ENOENT {
				err = s.missing(p)
			}
			return neg(err)
		}
		return 0
	case dRename:
		if l := lastName(a.Path[:a.Plen]); l == "." || l == ".." || self {
			return -int64(syscall.EBUSY)
		}
		if l := lastName(a.Path2[:a.Plen2]); l == "." || l == ".." {
			return -int64(syscall.EBUSY)
		}
		np, nslash, err := s.resolve(a.Node2, a.Path2[:a.Plen2], false)
		if err != nil {
			return neg(err)
		}
		om, _, err := s.fs.Stat(p)
		if err != nil {
			return neg(s.missing(p))
		}
		if (slash || nslash) && !om.IsDir() {
			return -int64(syscall.ENOTDIR)
		}
		keep := ""
		if np != p {
			keep = s.orphanFor(np)
		}
		if err := s.fs.Rename(p, np, a.Flags&1 != 0, keep); err != nil {
			if err == syscall.ENOENT {
				err = s.missing(np)
			}
			return neg(err)
		}
		s.renamed(p, np)
		return 0
	case dChmod:
		if s.slashOnFile(p, slash) {
			return -int64(syscall.ENOTDIR)
		}
		if self && nd.path == "" && nd.obj != "" {
			nd.meta.Mode = nd.meta.Mode&syscall.S_IFMT | a.Mode&0o7777
			return 0
		}
		return neg(s.fs.SetMeta(p, int64(a.Mode), UtimeOmit, UtimeOmit))
	case dUtimes:
		if s.slashOnFile(p, slash) {
			return -int64(syscall.ENOTDIR)
		}
		if self && nd.path == "" && nd.obj != "" {
			return 0
		}
		return neg(s.fs.SetMeta(p, -1, a.A, a.M))
	case dTruncate:
		obj := "f/" + p
		if self {
			obj = nd.obj
		}
		if obj == "" {
			return -int64(syscall.EISDIR)
		}
		if m, _, err := s.fs.Stat(p); !self && err == nil && m.IsDir() {
			return -int64(syscall.EISDIR)
		}
		if err := s.fs.Truncate(obj, a.Off); err != nil {
			if err == syscall.ENOENT {
				err = s.missing(p)
			}
			return neg(err)
		}
		if self {
			nd.written = true
		} else {
			s.fs.Touch(p)
		}
		return 0
	case dAccess:
		m, _, err := s.fs.Stat(p)
		if err != nil {
			return neg(s.missing(p))
		}
		if slash && !m.IsDir() {
			return -int64(syscall.ENOTDIR)
		}
		if a.Mode&2 != 0 && s.ro {
			return -int64(syscall.EROFS)
		}
		if a.Mode&1 != 0 && !m.IsDir() && m.Mode&0o111 == 0 {
			return -int64(syscall.EACCES)
		}
		return 0
	case dChdir:
		m, _, err := s.fs.Stat(p)
		if err != nil {
			return neg(s.missing(p))
		}
		if !m.IsDir() {
			return -int64(syscall.ENOTDIR)
		}
		return int64(s.newNode(&node{path: p, dir: true}))
	case dReadlink:
		m, _, err := s.fs.Stat(p)
		if err != nil {
			return neg(s.missing(p))
		}
		if !m.IsLink() {
			return -int64(syscall.EINVAL)
		}
		k, err := s.fs.ReadAt("f/"+p, unsafe.Slice((*byte)(a.Buf), a.N), 0)
		if err != nil {
			return neg(err)
		}
		return int64(k)
	case dSymlink:
		if slash {
			return -int64(syscall.ENOENT)
		}
		if err := s.fs.Symlink(p, string(a.Path2[:a.Plen2])); err != nil {
			if err == syscall.ENOENT {
				err = s.missing(p)
			}
			return neg(err)
		}
		return 0
	}
	return -int64(syscall.ENOSYS)
}

func (s *server) size(obj string) int64 {
	o, err := s.fs.object(obj)
	if err != nil {
		return 0
	}
	return o.Size()
}

func (s *server) fillStat(a *callArgs, m Meta, size int64) int64 {
	st := &a.St
	*st = syscall.Stat_t{}
	st.Dev = stDev
	st.Ino = m.Ino
	st.Nlink = 1
	if m.IsDir() {
		st.Nlink = 2
		size = objstore.BlockSize
	}
	st.Mode = m.Mode
	st.Size = size
	st.Blksize = objstore.BlockSize
	st.Blocks = (size + 511) / 512
	st.Atim = syscall.NsecToTimespec(m.Atime)
	st.Mtim = syscall.NsecToTimespec(m.Mtime)
	st.Ctim = syscall.NsecToTimespec(m.Ctime)
	return 0
}

// open serves open(2) on path p.
// slashOnFile reports whether a path that ended in a slash names a file
// that is not a directory: ENOTDIR for the calls that change it, as
// Linux says for "file/".
func (s *server) slashOnFile(p string, slash bool) bool {
	if !slash {
		return false
	}
	m, _, err := s.fs.Stat(p)
	return err == nil && !m.IsDir()
}

func (s *server) open(a *callArgs, p string, slash bool) int64 {
	flags := int(a.Flags)
	acc := flags & syscall.O_ACCMODE
	m, _, err := s.fs.Stat(p)
	switch {
	case err == syscall.ENOENT:
		if flags&syscall.O_CREAT == 0 {
			return neg(s.missing(p))
		}
		if slash {
			return -int64(syscall.EISDIR)
		}
		if m, err = s.fs.Create(p, a.Mode); err != nil {
			if err == syscall.ENOENT {
				err = s.missing(p)
			}
			return neg(err)
		}
	case err != nil:
		return neg(err)
	default:
		if flags&(syscall.O_CREAT|syscall.O_EXCL) == syscall.O_CREAT|syscall.O_EXCL {
			return -int64(syscall.EEXIST)
		}
		if m.IsLink() {
			return -int64(syscall.ELOOP) // O_NOFOLLOW
		}
		if m.IsDir() && (acc != syscall.O_RDONLY || flags&syscall.O_CREAT != 0) {
			return -int64(syscall.EISDIR)
		}
		if !m.IsDir() && (flags&syscall.O_DIRECTORY != 0 || slash) {
			return -int64(syscall.ENOTDIR)
		}
		if s.ro && acc != syscall.O_RDONLY {
			return -int64(syscall.EROFS)
		}
		if !m.IsDir() && flags&syscall.O_TRUNC != 0 && acc != syscall.O_RDONLY {
			if err := s.fs.Truncate("f/"+p, 0); err != nil {
				return neg(err)
			}
			s.fs.Touch(p)
		}
	}
	n := &node{path: p, dir: m.IsDir()}
	if !n.dir {
		n.obj = "f/" + p
	}
	a.Mode = m.Mode
	return int64(s.newNode(n))
}

// orphanFor returns the name under which file p's content must be kept
// because it is open ("" when it is not), and makes its nodes orphans.
func (s *server) orphanFor(p string) string {
	obj := "f/" + p
	keep := ""
	for _, n := range s.nodes {
		if n.obj != obj {
			continue
		}
		if keep == "" {
			m, _, err := s.fs.Stat(p)
			if err != nil {
				return ""
			}
			keep = orphanName(m.Ino)
			for _, o := range s.nodes {
				if o.obj == obj {
					o.obj, o.path, o.meta, o.written = keep, "", m, false
				}
			}
		}
	}
	return keep
}

// renamed updates the open nodes after a rename of old to new.
func (s *server) renamed(old, new string) {
	for _, n := range s.nodes {
		switch {
		case n.path == old:
			n.path = new
		case strings.HasPrefix(n.path, old+"/"):
			n.path = new + n.path[len(old):]
		default:
			continue
		}
		if !n.dir {
			n.obj = "f/" + n.path
		}
	}
}

// close forgets a node the program closed.
func (s *server) close(id uint64) {
	n := s.nodes[id]
	if n == nil {
		return
	}
	delete(s.nodes, id)
	if n.written && n.path != "" {
		s.fs.Touch(n.path)
	}
	if n.path == "" && strings.HasPrefix(n.obj, "o/") {
		for _, o := range s.nodes {
			if o.obj == n.obj {
				return
			}
		}
		if s.fs.tx.Delete(n.obj) == nil {
			s.fs.modified = true
		}
	}
}

// nodeCall serves the calls on an open node.
func (s *server) nodeCall(a *callArgs, n *node) int64 {
	switch a.Op {
	case dRead, dWrite:
		if n.dir {
			return -int64(syscall.EISDIR)
		}
		buf := unsafe.Slice((*byte)(a.Buf), a.N)
		if a.Op == dRead {
			if a.Off < 0 {
				return -int64(syscall.EINVAL)
			}
			k, err := s.fs.ReadAt(n.obj, buf, a.Off)
			if k > 0 {
				return int64(k)
			}
			return neg(err)
		}
		k, end, err := s.fs.WriteAt(n.obj, buf, a.Off)
		if k > 0 {
			n.written = true
			a.Off = end
		}
		if s.fs.Big() {
			s.commit()
		}
		if k > 0 {
			return int64(k)
		}
		return neg(err)
	case dGetdents:
		return s.getdents(a, n)
	case dSync:
		return neg(s.commit())
	case dGetcwd:
		if !n.dir {
			return -int64(syscall.ENOTDIR)
		}
		if len(n.path) > maxPathLen-256 {
			return -int64(syscall.ENAMETOOLONG)
		}
		return int64(copy(a.Path[:], n.path))
	}
	return -int64(syscall.ENOSYS)
}

// getdents fills the program's buffer with linux_dirent64 records from
// position a.Off (0 ".", 1 "..", then the entries in name order).
func (s *server) getdents(a *callArgs, n *node) int64 {
	if !n.dir {
		return -int64(syscall.ENOTDIR)
	}
	ents, err := s.fs.ReadDir(n.path)
	if err != nil {
		return neg(err)
	}
	buf := unsafe.Slice((*byte)(a.Buf), a.N)
	pos := a.Off
	// Where the entries start: after the last name returned when the
	// program continues where it stopped, else by position.
	start := int(pos - 2)
	if pos >= 2 && pos == n.dirPos && n.dirLast != "" {
		start = len(ents)
		for i, e := range ents {
			if e.Name > n.dirLast {
				start = i
				break
			}
		}
	}
	w := 0
	put := func(ino uint64, typ byte, name string) bool {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		if w+reclen > len(buf) {
			return false
		}
		r := buf[w : w+reclen]
		clear(r)
		putU64(r[0:], ino)
		putU64(r[8:], uint64(pos+1))
		r[16], r[17] = byte(reclen), byte(reclen>>8)
		r[18] = typ
		copy(r[19:], name)
		w += reclen
		return true
	}
	for {
		var ok bool
		switch {
		case pos == 0:
			ok = put(1, syscall.DT_DIR, ".")
		case pos == 1:
			ok = put(1, syscall.DT_DIR, "..")
			if ok {
				start = 0
			}
		default:
			if start < 0 || start >= len(ents) {
				a.Off = pos
				return int64(w)
			}
			e := ents[start]
			typ := byte(syscall.DT_REG)
			if e.Meta.IsDir() {
				typ = syscall.DT_DIR
			} else if e.Meta.IsLink() {
				typ = syscall.DT_LNK
			}
			if ok = put(e.Meta.Ino, typ, e.Name); ok {
				n.dirLast = e.Name
				start++
			}
		}
		if !ok {
			if w == 0 {
				return -int64(syscall.EINVAL)
			}
			a.Off = pos
			n.dirPos = pos
			return int64(w)
		}
		pos++
		n.dirPos = pos
	}
}

// lastName is a path's last component ("" for the root or an empty path).
func lastName(b []byte) string {
	p := strings.TrimRight(string(b), "/")
	return p[strings.LastIndexByte(p, '/')+1:]
}

func putU64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}
