// Command fsops exercises the in-memory file system through os, io and
// path/filepath and prints one line per check; "ALL OK" at the end means
// every check passed.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var (
	failed int
	extra  []func(dir string) // more checks, run in the temporary directory
)

func check(name string, ok bool, detail ...any) {
	if ok {
		fmt.Println("ok", name)
		return
	}
	failed++
	fmt.Println("FAIL", name, fmt.Sprint(detail...))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func names(dir string) string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var s []string
	for _, e := range es {
		s = append(s, e.Name())
	}
	return strings.Join(s, ",")
}

func main() {
	check("tempdir", os.TempDir() == "/tmp", os.TempDir())
	dir, err := os.MkdirTemp("", "fsops-")
	check("mkdirtemp", err == nil && strings.HasPrefix(dir, "/tmp/fsops-"), dir, err)

	// Create, read, write, append, truncate.
	p := filepath.Join(dir, "a.txt")
	must(os.WriteFile(p, []byte("hello"), 0o644))
	b, err := os.ReadFile(p)
	check("writefile+readfile", err == nil && string(b) == "hello", string(b), err)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	f.WriteString(", world")
	f.Close()
	b, _ = os.ReadFile(p)
	check("append", string(b) == "hello, world", string(b))
	must(os.Truncate(p, 5))
	b, _ = os.ReadFile(p)
	check("truncate", string(b) == "hello", string(b))
	f, _ = os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte("J"), 0)
	f.Seek(10, io.SeekStart)
	f.Write([]byte("!"))
	st, _ := f.Stat()
	buf := make([]byte, 11)
	n, _ := f.ReadAt(buf, 0)
	check("pwrite+hole", n == 11 && st.Size() == 11 && bytes.Equal(buf, []byte("Jello\x00\x00\x00\x00\x00!")), n, st.Size(), buf)
	f.Truncate(2)
	f.Close()
	b, _ = os.ReadFile(p)
	check("ftruncate", string(b) == "Je", string(b))
	_, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	check("excl", os.IsExist(err), err)
	f, err = os.OpenFile(p, os.O_TRUNC|os.O_WRONLY, 0)
	must(err)
	f.Close()
	st, _ = os.Stat(p)
	check("o_trunc", st.Size() == 0, st.Size())
	_, err = os.ReadFile(filepath.Join(dir, "nope"))
	check("notexist", os.IsNotExist(err) && errors.Is(err, fs.ErrNotExist), err)
	_, err = os.Open(filepath.Join(p, "x"))
	check("enotdir", errors.Is(err, syscall.ENOTDIR), err)

	// A big file (index pages) and its removal.
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.8 MB
	must(os.WriteFile(filepath.Join(dir, "big"), big, 0o600))
	b, _ = os.ReadFile(filepath.Join(dir, "big"))
	check("bigfile", bytes.Equal(b, big), len(b))
	must(os.Remove(filepath.Join(dir, "big")))

	// Directories.
	must(os.MkdirAll(filepath.Join(dir, "d", "e", "f"), 0o755))
	for _, n := range []string{"c", "a", "b"} {
		must(os.WriteFile(filepath.Join(dir, "d", n), nil, 0o644))
	}
	check("readdir", names(filepath.Join(dir, "d")) == "a,b,c,e", names(filepath.Join(dir, "d")))
	err = os.Remove(filepath.Join(dir, "d"))
	check("rmdir-notempty", errors.Is(err, syscall.ENOTEMPTY), err)
	err = os.Mkdir(filepath.Join(dir, "d"), 0o755)
	check("mkdir-exist", os.IsExist(err), err)
	var walked []string
	filepath.WalkDir(filepath.Join(dir, "d"), func(path string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, path)
		walked = append(walked, rel)
		return err
	})
	check("walkdir", strings.Join(walked, " ") == "d d/a d/b d/c d/e d/e/f", walked)
	must(os.RemoveAll(filepath.Join(dir, "d")))
	_, err = os.Stat(filepath.Join(dir, "d"))
	check("removeall", os.IsNotExist(err), err)

	// Rename, over an existing file too.
	must(os.WriteFile(filepath.Join(dir, "r1"), []byte("one"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "r2"), []byte("two"), 0o644))
	must(os.Rename(filepath.Join(dir, "r1"), filepath.Join(dir, "r2")))
	b, _ = os.ReadFile(filepath.Join(dir, "r2"))
	_, err = os.Stat(filepath.Join(dir, "r1"))
	check("rename-over", string(b) == "one" && os.IsNotExist(err), string(b), err)
	must(os.Mkdir(filepath.Join(dir, "m"), 0o755))
	must(os.Rename(filepath.Join(dir, "r2"), filepath.Join(dir, "m", "r3")))
	must(os.Rename(filepath.Join(dir, "m"), filepath.Join(dir, "m2")))
	b, err = os.ReadFile(filepath.Join(dir, "m2", "r3"))
	check("rename-dir", string(b) == "one", err)

	// Symlinks and hard links.
	must(os.Symlink("m2/r3", filepath.Join(dir, "ln")))
	t, err := os.Readlink(filepath.Join(dir, "ln"))
	check("readlink", t == "m2/r3", t, err)
	lst, _ := os.Lstat(filepath.Join(dir, "ln"))
	sst, _ := os.Stat(filepath.Join(dir, "ln"))
	check("lstat-vs-stat", lst.Mode()&fs.ModeSymlink != 0 && sst.Mode().IsRegular() && sst.Size() == 3, lst.Mode(), sst.Mode())
	b, _ = os.ReadFile(filepath.Join(dir, "ln"))
	check("read-through-link", string(b) == "one", string(b))
	must(os.Link(filepath.Join(dir, "m2", "r3"), filepath.Join(dir, "hard")))
	sst, _ = os.Stat(filepath.Join(dir, "hard"))
	check("hardlink-count", sst.Sys().(*syscall.Stat_t).Nlink == 2, sst.Sys().(*syscall.Stat_t).Nlink)
	must(os.Remove(filepath.Join(dir, "m2", "r3")))
	sst, _ = os.Stat(filepath.Join(dir, "hard"))
	b, _ = os.ReadFile(filepath.Join(dir, "hard"))
	check("hardlink-after-unlink", sst.Sys().(*syscall.Stat_t).Nlink == 1 && string(b) == "one", string(b))
	_, err = os.Stat(filepath.Join(dir, "ln"))
	check("dangling-link", os.IsNotExist(err), err)
	must(os.Symlink("loop", filepath.Join(dir, "loop")))
	_, err = os.Stat(filepath.Join(dir, "loop"))
	check("eloop", errors.Is(err, syscall.ELOOP), err)

	// Modes and times.
	must(os.Chmod(filepath.Join(dir, "hard"), 0o640))
	sst, _ = os.Stat(filepath.Join(dir, "hard"))
	check("chmod", sst.Mode() == 0o640, sst.Mode())
	mt := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "hard"), mt, mt))
	sst, _ = os.Stat(filepath.Join(dir, "hard"))
	check("chtimes", sst.ModTime().Equal(mt), sst.ModTime())
	sst, _ = os.Stat(filepath.Join(dir, "m2"))
	check("dir-mode", sst.IsDir() && sst.Mode().Perm() == 0o755, sst.Mode())
	now := time.Now()
	must(os.WriteFile(filepath.Join(dir, "new"), nil, 0o666))
	sst, _ = os.Stat(filepath.Join(dir, "new"))
	check("umask+mtime", sst.Mode() == 0o644 && sst.ModTime().Sub(now).Abs() < time.Minute, sst.Mode(), sst.ModTime(), now)
	must(os.Chown(filepath.Join(dir, "new"), 7, 8))
	sst, _ = os.Stat(filepath.Join(dir, "new"))
	check("chown", sst.Sys().(*syscall.Stat_t).Uid == 7 && sst.Sys().(*syscall.Stat_t).Gid == 8)

	// Working directory.
	must(os.Chdir(dir))
	wd, _ := os.Getwd()
	check("getwd", wd == dir, wd)
	must(os.Mkdir("rel", 0o755))
	must(os.Chdir("rel"))
	must(os.WriteFile("../relfile", []byte("x"), 0o644))
	wd, _ = os.Getwd()
	_, err = os.Stat(filepath.Join(dir, "relfile"))
	check("relative", wd == filepath.Join(dir, "rel") && err == nil, wd, err)
	must(os.Chdir("/"))

	// Pipes between goroutines; a large write blocks until read.
	r, w, err := os.Pipe()
	must(err)
	payload := bytes.Repeat([]byte("pipe!"), 100000)
	done := make(chan error)
	go func() {
		_, err := w.Write(payload)
		w.Close()
		done <- err
	}()
	got, err := io.ReadAll(r)
	werr := <-done
	check("pipe", err == nil && werr == nil && bytes.Equal(got, payload), len(got), err, werr)
	r.Close()
	r, w, _ = os.Pipe()
	r.Close()
	_, err = w.Write([]byte("x"))
	check("epipe", errors.Is(err, syscall.EPIPE), err)
	w.Close()
	r, w, _ = os.Pipe()
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = r.Read(make([]byte, 1))
	check("pipe-deadline", errors.Is(err, os.ErrDeadlineExceeded), err)
	r.Close()
	w.Close()

	// Devices.
	nf, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	must(err)
	n, _ = nf.Write([]byte("gone"))
	m, rerr := nf.Read(make([]byte, 4))
	check("devnull", n == 4 && m == 0 && rerr == io.EOF, n, m, rerr)
	nf.Close()
	rf, _ := os.Open("/dev/urandom")
	rb := make([]byte, 64)
	io.ReadFull(rf, rb)
	rf.Close()
	check("urandom", !bytes.Equal(rb, make([]byte, 64)))
	zf, _ := os.Open("/dev/zero")
	zb := []byte("xxxx")
	zf.Read(zb)
	zf.Close()
	check("devzero", string(zb) == "\x00\x00\x00\x00", zb)
	st, err = os.Stat("/dev/stdout")
	check("devstdout", err == nil && st.Mode()&fs.ModeCharDevice != 0, err)
	_, err = os.ReadFile("/proc/self/cgroup")
	check("no-cgroup", os.IsNotExist(err), err)
	fmt.Fprintln(os.Stderr, "to stderr")
	df, _ := os.OpenFile("/dev/stderr", os.O_WRONLY, 0)
	fmt.Fprintln(df, "to stderr again")

	// File descriptors.
	f, _ = os.Create(filepath.Join(dir, "dup"))
	fd2, err := syscall.Dup(int(f.Fd()))
	syscall.Write(fd2, []byte("via dup"))
	off, _ := f.Seek(0, io.SeekCurrent)
	check("dup-shares-offset", err == nil && off == 7, off, err)
	syscall.Close(fd2)
	f.Close()

	for _, f := range extra {
		f(dir)
	}
	must(os.RemoveAll(dir))
	_, err = os.Stat(dir)
	check("cleanup", os.IsNotExist(err), err)
	if failed > 0 {
		fmt.Println(failed, "FAILED")
		os.Exit(1)
	}
	fmt.Println("ALL OK")
}

func init() { extra = append(extra, fifoCheck) }

// fifoCheck: a named pipe between two goroutines, opened blocking.
func fifoCheck(dir string) {
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		check("mkfifo", false, err)
		return
	}
	st, err := os.Stat(p)
	check("fifo-mode", err == nil && st.Mode()&fs.ModeNamedPipe != 0, st.Mode(), err)
	go func() {
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.Write([]byte("through the fifo"))
		w.Close()
	}()
	r, err := os.Open(p)
	if err != nil {
		check("fifo-open", false, err)
		return
	}
	b, err := io.ReadAll(r)
	r.Close()
	check("fifo", err == nil && string(b) == "through the fifo", string(b), err)
}
