package datafs

import (
	"strings"
	"syscall"
	"testing"

	"github.com/amberos/amber/objstore"
)

func newServer(t *testing.T) *server {
	t.Helper()
	st, err := objstore.Create(objstore.NewMemDevice(nil))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Open(st, false)
	if err != nil {
		t.Fatal(err)
	}
	return &server{fs: fs, args: &callArgs{}, nodes: map[uint64]*node{}, next: 1}
}

func (s *server) do(op uint32, node uint64, path string, flags uint32, mode uint32) int64 {
	a := s.args
	*a = callArgs{Op: op, Node: node, Flags: flags, Mode: mode}
	a.Plen = uint32(copy(a.Path[:], path))
	return s.call(a)
}

func TestServerOpenCreate(t *testing.T) {
	s := newServer(t)
	if r := s.do(dMkdir, 0, "ops", 0, 0o755); r != 0 {
		t.Fatalf("mkdir: %d", r)
	}
	r := s.do(dOpen, 0, "ops/a", syscall.O_CREAT|syscall.O_WRONLY|syscall.O_TRUNC, 0o644)
	if r <= 0 {
		t.Fatalf("open: %d", r)
	}
}

func TestServerCalls(t *testing.T) {
	s := newServer(t)
	if r := s.do(dMkdir, 0, "d", 0, 0o755); r != 0 {
		t.Fatalf("mkdir: %d", r)
	}
	if r := s.do(dUnlink, 0, "d/.", 0x200, 0); r != -int64(syscall.EINVAL) {
		t.Errorf("rmdir d/.: %d", r)
	}
	if r := s.do(dUnlink, 0, "d/..", 0x200, 0); r != -int64(syscall.ENOTEMPTY) {
		t.Errorf("rmdir d/..: %d", r)
	}
	// ".." at the root stays there: /data/../d is /data/d.
	if r := s.do(dStat, 0, "../d", 0, 0); r != 0 || s.args.St.Mode&syscall.S_IFDIR == 0 {
		t.Errorf("stat ../d: %d %o", r, s.args.St.Mode)
	}
	f := s.do(dOpen, 0, "d/f", syscall.O_CREAT|syscall.O_RDWR, 0o600)
	if f <= 0 {
		t.Fatalf("open: %d", f)
	}
	if r := s.do(dStat, 0, "d/f/", 0, 0); r != -int64(syscall.ENOTDIR) {
		t.Errorf("stat d/f/: %d", r)
	}
	if r := s.do(dOpen, 0, "d/f/x", syscall.O_CREAT|syscall.O_RDWR, 0o600); r != -int64(syscall.ENOTDIR) {
		t.Errorf("create under a file: %d", r)
	}
	// Unlinked while open: the node keeps the data; the name is gone.
	if r := s.do(dUnlink, 0, "d/f", 0, 0); r != 0 {
		t.Fatalf("unlink: %d", r)
	}
	if r := s.do(dStat, 0, "d/f", 0, 0); r != -int64(syscall.ENOENT) {
		t.Errorf("stat after unlink: %d", r)
	}
	if n := s.nodes[uint64(f)]; n == nil || !strings.HasPrefix(n.obj, "o/") {
		t.Fatalf("the open node is no orphan: %+v", n)
	}
	orphan := s.nodes[uint64(f)].obj
	s.close(uint64(f))
	if _, err := s.fs.tx.Stat(orphan); err == nil {
		t.Errorf("the orphan %s outlived its last close", orphan)
	}
	// Renaming a directory moves what is below it; open nodes follow.
	s.do(dMkdir, 0, "d/e", 0, 0o755)
	g := s.do(dOpen, 0, "d/e/g", syscall.O_CREAT|syscall.O_RDWR, 0o600)
	a := s.args
	*a = callArgs{Op: dRename}
	a.Plen = uint32(copy(a.Path[:], "d"))
	a.Plen2 = uint32(copy(a.Path2[:], "z"))
	if r := s.call(a); r != 0 {
		t.Fatalf("rename d z: %d", r)
	}
	if s.nodes[uint64(g)].path != "z/e/g" {
		t.Errorf("open node after rename: %q", s.nodes[uint64(g)].path)
	}
	if r := s.do(dStat, 0, "z/e/g", 0, 0); r != 0 {
		t.Errorf("stat z/e/g: %d", r)
	}
	if err := s.fs.Sync(); err != nil {
		t.Fatal(err)
	}
	if rep := s.fs.s.Fsck(); !rep.OK() {
		t.Fatal(rep)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{"": "", "/": "", "a//b/": "a/b", "../a": "a", "a/../../b": "b", "./a/./b/..": "a"} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// A store holding other objects is not taken for a file system.
func TestOpenRefusesOtherStores(t *testing.T) {
	st, err := objstore.Create(objstore.NewMemDevice(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *objstore.Tx) error { _, err := tx.Create("vm/disk"); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(st, false); err != ErrNotDataFS {
		t.Fatalf("Open: %v, want ErrNotDataFS", err)
	}
}

func TestServerSymlinks(t *testing.T) {
	s := newServer(t)
	s.fs.Mkdir("d", 0o755)
	s.fs.WriteFile("d/file", []byte("x"), 0o644)
	s.fs.Symlink("l1", "d/file")
	s.fs.Symlink("l2", "d/file/")
	s.fs.Symlink("loop", "loop")
	s.fs.Symlink("up", "..")
	s.fs.Symlink("abs", "/data/d")
	s.fs.Symlink("out", "/tmp")
	s.mount = "/data"
	for _, c := range []struct {
		path   string
		follow bool
		want   int64
	}{
		{"l1", true, 0},
		{"l1/", true, -int64(syscall.ENOTDIR)},
		{"l2", true, -int64(syscall.ENOTDIR)},
		{"loop", true, -int64(syscall.ELOOP)},
		{"loop", false, 0},
		{"up/d/file", true, 0},
		{"abs/file", true, 0},
		{"out/x", true, -int64(syscall.EXDEV)},
		{"missing/x", true, -int64(syscall.ENOENT)},
		{"d/file/x", true, -int64(syscall.ENOTDIR)},
	} {
		a := s.args
		*a = callArgs{Op: dStat}
		if c.follow {
			a.Follow = 1
		}
		a.Plen = uint32(copy(a.Path[:], c.path))
		if r := s.call(a); r != c.want {
			t.Errorf("stat %q (follow %v): %d, want %d", c.path, c.follow, r, c.want)
		}
	}
}
