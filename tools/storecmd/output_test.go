package storecmd

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/tools/build/outfile/outfiletest"
)

func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func isCharDevice(t *testing.T, path string) {
	t.Helper()
	if st, err := os.Lstat(path); err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		t.Fatalf("%s is no longer a character device: %v", path, err)
	}
}

func storeIntact(t *testing.T, st string, want map[string]string) {
	t.Helper()
	if out := must(t, nil, "fsck", st); !strings.Contains(out, "clean") {
		t.Fatalf("fsck: %s", out)
	}
	for name, data := range want {
		if got := must(t, nil, "get", st, name); got != data {
			t.Fatalf("object %s: %q, want %q", name, got, data)
		}
	}
}

// vmm store get never destroys a file it was not asked to write, nor the
// store, nor a device node.
func TestGetNeverDestroys(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "s")
	must(t, nil, "create", st)
	must(t, []byte("object data"), "put", st, "obj")
	objs := map[string]string{"obj": "object data"}

	// The store itself, by any name: refused before anything is written.
	os.Symlink("s", filepath.Join(dir, "sym"))
	os.Link(st, filepath.Join(dir, "hard"))
	for _, dst := range []string{st, filepath.Join(dir, "sym"), filepath.Join(dir, "hard"), filepath.Join(dir, ".", "s")} {
		r := run(t, nil, "get", st, "obj", dst)
		if r.code != 1 || !strings.Contains(r.stderr, "refusing to write over it") {
			t.Errorf("get into the store as %s: %+v", dst, r)
		}
	}
	storeIntact(t, st, objs)
	// Standard output appending to the store.
	f, err := os.OpenFile(st, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	size := func() int64 { fi, _ := os.Stat(st); return fi.Size() }
	before := size()
	var errb bytes.Buffer
	if code := Main([]string{"get", st, "obj"}, nil, f, &errb); code != 1 || !strings.Contains(errb.String(), "standard output is the store "+st+" itself") {
		t.Errorf("get to stdout appending to the store: exit %d, %q", code, errb.String())
	}
	f.Close()
	if size() != before {
		t.Errorf("the store grew from %d to %d bytes", before, size())
	}

	// Devices are written in place, never replaced or removed.
	null, full := outfiletest.Null(t), outfiletest.Full(t)
	must(t, nil, "get", st, "obj", null)
	isCharDevice(t, null)
	r := run(t, nil, "get", st, "obj", full)
	if r.code != 1 || !strings.Contains(r.stderr, "store get: writing "+full+": no space left on device") {
		t.Errorf("get to %s: %+v", full, r)
	}
	isCharDevice(t, full)

	// A named pipe is written in place.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	got := make(chan string)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	must(t, nil, "get", st, "obj", fifo)
	if s := <-got; s != "object data" {
		t.Errorf("read from the FIFO: %q", s)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v", err)
	}

	// A directory is refused; a regular file is replaced, keeping its
	// mode; a failed get leaves it as it was.
	if r := run(t, nil, "get", st, "obj", dir); r.code != 1 || !strings.Contains(r.stderr, dir+" is a directory") {
		t.Errorf("get to a directory: %+v", r)
	}
	out := filepath.Join(dir, "out")
	os.WriteFile(out, []byte("old"), 0o640)
	must(t, nil, "get", st, "obj", out)
	if b, _ := os.ReadFile(out); string(b) != "object data" {
		t.Errorf("out: %q", b)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o640 {
		t.Errorf("out's mode %v, want 0640 kept", fi.Mode())
	}
	os.WriteFile(out, []byte("old"), 0o640)
	if r := run(t, nil, "get", st, "missing", out); r.code != 1 {
		t.Errorf("get of a missing object: %+v", r)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("a failed get changed out: %q", b)
	}
	storeIntact(t, st, objs)
	noTemps(t, dir)
}

// Ctrl-C during a get into a file leaves the file as it was and no
// temporary file.
func TestGetInterrupted(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "s")
	must(t, nil, "create", st)
	randomFile(t, filepath.Join(dir, "big"), 2*chunk+1)
	must(t, nil, "put", st, "big", filepath.Join(dir, "big"))
	out := filepath.Join(dir, "out")
	os.WriteFile(out, []byte("old"), 0o644)
	testHookChunk = func(ctx context.Context) {
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-ctx.Done() // the signal has reached get
	}
	defer func() { testHookChunk = nil }()
	r := run(t, nil, "get", st, "big", out)
	if r.code != 130 || !strings.Contains(r.stderr, "interrupted; "+out+" not written") {
		t.Errorf("interrupted get: %+v", r)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("out changed: %d bytes", len(b))
	}
	noTemps(t, dir)
}

// put refuses to read the store into itself (it would read what it
// writes), from a path or from standard input; a directory is refused.
func TestPutFromTheStore(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "s")
	must(t, nil, "create", st)
	must(t, []byte("x"), "put", st, "x")
	os.Symlink("s", filepath.Join(dir, "sym"))
	for _, src := range []string{st, filepath.Join(dir, "sym")} {
		r := run(t, nil, "put", st, "copy", src)
		if r.code != 1 || !strings.Contains(r.stderr, "is the store "+st+" itself") {
			t.Errorf("put from %s: %+v", src, r)
		}
	}
	f, err := os.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	if code := Main([]string{"put", st, "copy"}, f, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "standard input is the store "+st+" itself") {
		t.Errorf("put from stdin = the store: exit %d, %q", code, errb.String())
	}
	f.Close()
	if r := run(t, nil, "put", st, "copy", dir); r.code != 1 || !strings.Contains(r.stderr, dir+" is a directory") {
		t.Errorf("put from a directory: %+v", r)
	}
	storeIntact(t, st, map[string]string{"x": "x"})
	if ls := must(t, nil, "ls", st); strings.Contains(ls, "copy") {
		t.Errorf("ls:\n%s", ls)
	}
}

// A named pipe (or any file that is not a regular file or block device)
// as the store is refused at once instead of hanging in open.
func TestStoreNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Should the store be opened for reading after all, this writer lets
	// the open return; the read end opened at the end releases it.
	released := make(chan struct{})
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		close(released)
	}()
	null := outfiletest.Null(t)
	for _, args := range [][]string{
		{"ls", fifo}, {"get", fifo, "x"}, {"du", fifo}, {"fsck", fifo}, {"put", fifo, "x", "-"}, {"rm", fifo, "x"}, {"create", fifo},
		{"ls", dir}, {"put", dir, "x", "-"}, {"ls", null}, {"put", null, "x", "-"},
	} {
		r := run(t, []byte("data"), args...)
		if r.code != 1 || !strings.Contains(r.stderr, " is a ") || !strings.Contains(r.stderr, "a store must be a regular file or a block device") {
			t.Errorf("store %q: %+v", args, r)
		}
	}
	isCharDevice(t, null)
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-released
	rd.Close()
}

// A damaged newest superblock: every command that opens the store says on
// stderr that the newest commit is unreadable and which one it shows.
func TestNewestSuperblockWarning(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "s")
	must(t, nil, "create", st)
	must(t, []byte("a"), "put", st, "a")
	must(t, []byte("b"), "put", st, "b")
	dev, err := filedev.Open(st, filedev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	txid := s.TxID()
	dev.Close()
	if r := run(t, nil, "ls", st); r.stderr != "" {
		t.Fatalf("ls of a clean store: %+v", r)
	}
	// Flip one bit of the newest superblock's checksum.
	f, err := os.OpenFile(st, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(txid%2)*objstore.BlockSize + 80
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 1
	f.WriteAt(b, off)
	f.Close()

	warn := "warning: " + st + ": the newest commit, transaction " + itoa(txid) + ", is unreadable (superblock " + itoa(txid%2) +
		": checksum mismatch); using the previous commit, transaction " + itoa(txid-1)
	r := run(t, nil, "ls", st)
	if r.code != 0 || !strings.Contains(r.stderr, "store ls: "+warn) || strings.Contains(r.stdout, "b") || !strings.Contains(r.stdout, "a") {
		t.Errorf("ls: %+v\nwant on stderr: %s", r, warn)
	}
	for _, args := range [][]string{{"get", st, "a"}, {"du", st}} {
		if r := run(t, nil, args...); r.code != 0 || !strings.Contains(r.stderr, "store "+args[0]+": "+warn) {
			t.Errorf("store %v: %+v", args, r)
		}
	}
	if r := run(t, nil, "fsck", st); r.code != 1 || !strings.Contains(r.stdout, "superblock "+itoa(txid%2)+" invalid: checksum mismatch") {
		t.Errorf("fsck: %+v", r)
	}
	// A change commits on top of the commit shown, and says so.
	r = run(t, []byte("c"), "put", st, "c")
	if r.code != 0 || !strings.Contains(r.stderr, "store put: "+warn+"; this command commits on top of transaction "+itoa(txid-1)) {
		t.Errorf("put: %+v", r)
	}
	if r := run(t, nil, "ls", st); r.stderr != "" || !strings.Contains(r.stdout, "c") {
		t.Errorf("ls after a commit: %+v", r)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
