package filedev

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
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
