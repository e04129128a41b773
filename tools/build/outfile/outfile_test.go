package outfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amberos/amber/tools/build/outfile/outfiletest"
)

// noTemps fails if a temporary file is left in dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func write(t *testing.T, path string, data string, o Options) error {
	t.Helper()
	f, err := Create(path, o)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := io.WriteString(f, data); err != nil {
		return err
	}
	return f.Commit()
}

func isCharDevice(t *testing.T, path string) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		t.Fatalf("%s is no longer a character device: %v, %v", path, st, err)
	}
}

func TestReplaceRegular(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := write(t, out, "one", Options{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := Create(out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.InPlace() || filepath.Dir(f.Name()) != dir || f.Name() == out {
		t.Fatalf("temporary file %s, in place %v", f.Name(), f.InPlace())
	}
	io.WriteString(f, "two")
	if b, _ := os.ReadFile(out); string(b) != "one" {
		t.Fatalf("the output changed before Commit: %q", b)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(out)
	if b, _ := os.ReadFile(out); string(b) != "two" || st.Mode().Perm() != 0o640 {
		t.Fatalf("after Commit: %q, mode %v (want two, 0640 kept)", b, st.Mode())
	}
	// Abort leaves the output as it was.
	f, _ = Create(out, Options{})
	io.WriteString(f, "three")
	f.Abort()
	if b, _ := os.ReadFile(out); string(b) != "two" {
		t.Fatalf("after Abort: %q", b)
	}
	// Replace can refuse.
	no := errors.New("not an image")
	if err := write(t, out, "four", Options{Replace: func(string, fs.FileInfo) error { return no }}); err != no {
		t.Fatalf("Replace refusing: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "two" {
		t.Fatalf("after a refused Replace: %q", b)
	}
	noTemps(t, dir)
}

// Two writers of the same output use different temporary files: the
// result is one of them, whole, never a mix.
func TestUniqueTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "same.img")
	a, err := Create(out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() == b.Name() {
		t.Fatalf("both writers write %s", a.Name())
	}
	big := func(c byte) []byte { return bytes.Repeat([]byte{c}, 1<<20) }
	a.Write(big('a')[:1<<19])
	b.Write(big('b'))
	a.Write(big('a')[1<<19:])
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, big('b')) {
		t.Fatal("the output is not the last writer's data, whole")
	}
	noTemps(t, dir)
}

// Devices and pipes are never replaced or removed: refused, or written in
// place with InPlace.
func TestDevicesAndPipes(t *testing.T) {
	dir := t.TempDir()
	null, full := outfiletest.Null(t), outfiletest.Full(t)
	if err := write(t, null, "x", Options{}); err == nil || !strings.Contains(err.Error(), null+" is a character device, not a regular file: refusing to replace it") {
		t.Errorf("%s without InPlace: %v", null, err)
	}
	isCharDevice(t, null)
	if err := write(t, null, "x", Options{InPlace: true}); err != nil {
		t.Errorf("%s in place: %v", null, err)
	}
	isCharDevice(t, null)
	if err := write(t, full, "x", Options{InPlace: true}); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("%s in place: %v, want ENOSPC", full, err)
	}
	isCharDevice(t, full)
	// A symlink to /dev/null is followed, the link kept.
	link := filepath.Join(dir, "null")
	os.Symlink(null, link)
	if err := write(t, link, "x", Options{InPlace: true}); err != nil {
		t.Errorf("symlink to /dev/null: %v", err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v", err)
	}
	if !IsNullDevice(link) || !IsNullDevice(null) || !IsNullDevice(os.DevNull) || IsNullDevice(full) || IsNullDevice(dir) {
		t.Error("IsNullDevice")
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := write(t, fifo, "x", Options{}); err == nil || !strings.Contains(err.Error(), "is a named pipe (FIFO), not a regular file") {
		t.Errorf("FIFO without InPlace: %v", err)
	}
	got := make(chan string)
	go func() {
		r, err := os.Open(fifo)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(r)
		r.Close()
		got <- string(b)
	}()
	if err := write(t, fifo, "through the pipe", Options{InPlace: true}); err != nil {
		t.Errorf("FIFO in place: %v", err)
	}
	if s := <-got; s != "through the pipe" {
		t.Errorf("the reader got %q", s)
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v", err)
	}

	if err := write(t, dir, "x", Options{InPlace: true}); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
	noTemps(t, dir)
}

// An output that is an input, through any path, is refused before
// anything is written.
func TestOutputIsInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.WriteFile(in, []byte("precious"), 0o644)
	sym := filepath.Join(dir, "sym")
	os.Symlink("in", sym)
	hard := filepath.Join(dir, "hard")
	os.Link(in, hard)
	for _, out := range []string{in, sym, hard, filepath.Join(dir, ".", "in")} {
		err := write(t, out, "clobbered", Options{Inputs: []string{in}, InPlace: true})
		if err == nil || !strings.Contains(err.Error(), "refusing to write over it") {
			t.Errorf("output %s, input %s: %v", out, in, err)
		}
	}
	// The same device through two device nodes.
	if null := outfiletest.Null(t); null != os.DevNull {
		if err := write(t, null, "x", Options{Inputs: []string{os.DevNull}, InPlace: true}); err == nil || !strings.Contains(err.Error(), "is the same file as the input /dev/null") {
			t.Errorf("%s as output, /dev/null as input: %v", null, err)
		}
	}
	if b, _ := os.ReadFile(in); string(b) != "precious" {
		t.Fatalf("the input changed: %q", b)
	}
	noTemps(t, dir)
}

func TestSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.img")
	os.WriteFile(real, []byte("old"), 0o644)
	link := filepath.Join(dir, "link.img")
	os.Symlink("real.img", link)
	if err := write(t, link, "new", Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("the link's target has %q", b)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v", err)
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink("nowhere/x", dangling)
	if err := write(t, dangling, "x", Options{}); err == nil || !strings.Contains(err.Error(), "symbolic link to a file that cannot be reached") {
		t.Errorf("dangling symlink: %v", err)
	}
	if err := write(t, filepath.Join(dir, "missing", "x"), "x", Options{}); err == nil || !strings.Contains(err.Error(), "cannot create a file in") {
		t.Errorf("missing directory: %v", err)
	}
	noTemps(t, dir)
}

func TestReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes read-only directories")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.WriteFile(out, []byte("old"), 0o644)
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	err := write(t, out, "new", Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot write "+out+": cannot create a file in "+dir+": permission denied") {
		t.Errorf("read-only directory: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("the output changed: %q", b)
	}
}
