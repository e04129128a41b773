package datafs

import (
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
