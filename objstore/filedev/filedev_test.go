package filedev

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLockAndSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w, err := Open(path, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := Open(path, Options{Create: true}); err == nil {
		t.Fatal("create of an existing file worked")
	}
	_, err = Open(path, Options{})
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || !strings.Contains(err.Error(), "store is locked by pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second writer: %v", err)
	}
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("reader while a writer holds the lock: %v", err)
	}
	if _, err := r.WriteAt([]byte("x"), 0); err == nil {
		t.Error("write through a read-only device worked")
	}
	r.Close()
	// Closing a read-only descriptor must not drop the writer's lock.
	if _, err := Open(path, Options{}); !errors.As(err, &le) {
		t.Fatalf("lock lost after a reader closed: %v", err)
	}

	// Growth is sparse.
	if err := w.Grow(1 << 30); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(make([]byte, 4096), 1<<29); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 1<<30 || st.Blocks*512 > 1<<20 {
		t.Fatalf("size %d, %d bytes allocated: not sparse", st.Size, st.Blocks*512)
	}
	if w.Size() != 1<<30 || w.Flushes.Load() != 1 {
		t.Fatalf("Size %d, flushes %d", w.Size(), w.Flushes.Load())
	}
	w.Close()
	w2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("lock not released by Close: %v", err)
	}
	w2.Close()
}

// A store path that is not a regular file or a block device is refused
// before it is opened: a named pipe would block the open until a writer
// came, a directory or a character device is no place for a store.
func TestNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Should Open open the FIFO for reading after all, this writer lets
	// it return instead of hanging; the read end opened at the end
	// releases the writer when Open never opened it.
	wrote := make(chan struct{})
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		close(wrote)
	}()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, what string
		o          Options
	}{
		{fifo, "a named pipe (FIFO)", Options{ReadOnly: true}},
		{fifo, "a named pipe (FIFO)", Options{}},
		{link, "a named pipe (FIFO)", Options{ReadOnly: true}},
		{fifo, "a named pipe (FIFO)", Options{Create: true}},
		{dir, "a directory", Options{ReadOnly: true}},
		{dir, "a directory", Options{}},
		{os.DevNull, "a character device", Options{ReadOnly: true}},
		{os.DevNull, "a character device", Options{}},
	} {
		d, err := Open(c.path, c.o)
		var nf *NotFileError
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), c.path+" is "+c.what+": a store must be a regular file or a block device") {
			t.Errorf("Open(%s, %+v) = %v; want a NotFileError saying it is %s", c.path, c.o, err, c.what)
		}
		if d != nil {
			d.Close()
		}
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the FIFO is gone or changed: %v", err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-wrote
	r.Close()
}

// A block device holds a store too: its size is the device's, and the
// store cannot grow past it.
func TestBlockDevice(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup")
	}
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("cannot attach a loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	d, err := Open(loop, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != 8<<20 {
		t.Fatalf("Size %d, want %d", d.Size(), 8<<20)
	}
	if err := d.Grow(4 << 20); err != nil {
		t.Fatalf("Grow within the device: %v", err)
	}
	if err := d.Grow(16 << 20); err == nil || !strings.Contains(err.Error(), "block device is full") {
		t.Fatalf("Grow past the device: %v", err)
	}
	if _, err := d.WriteAt([]byte("x"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
}
