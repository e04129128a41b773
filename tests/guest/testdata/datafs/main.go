// Command datafs exercises the persistent file system at /data (or
// $DATA): TestData* in tests/guest run it under QEMU with a disk, and
// natively for the benchmark's baseline.
//
//	datafs write N     N files with fsync each, "synced NAME" after each fsync
//	datafs check       every fNNN file holds its content: "checked N"
//	datafs nosync N HOW N files without fsync, then ends by HOW: return
//	                   (from main), exit3 (os.Exit(3)), panic, or wait (for
//	                   a signal that kills it)
//	datafs cycle START check, then write files from fSTART on until killed
//	datafs ops         file system calls and their results, "ops ok" at the end
//	datafs host        prints fromhost's content, writes fromguest
//	datafs bench MiB   sequential 1 MiB writes and reads, 4 KiB random reads,
//	                   the median latency of a 4 KiB write's fsync
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

var dir = "/data"

// content is file name's expected content: its name, repeated to a size
// that depends on the name (up to ~40 KiB, so files span blocks).
func content(name string) []byte {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "f"))
	size := 1 + (n*7919)%40000
	return bytes.Repeat([]byte(name+"|"), size/(len(name)+1)+1)[:size]
}

func main() {
	if d := os.Getenv("DATA"); d != "" {
		dir = d
	}
	if len(os.Args) < 2 {
		fail("usage: datafs write N | check | ops | host | bench MiB")
	}
	switch os.Args[1] {
	case "write":
		n, _ := strconv.Atoi(os.Args[2])
		write(0, n)
		fmt.Println("write done")
	case "nosync":
		n, _ := strconv.Atoi(os.Args[2])
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("f%03d", i)
			check(os.WriteFile(filepath.Join(dir, name), content(name), 0o644))
		}
		fmt.Println("written without fsync")
		switch os.Args[3] {
		case "return":
			return
		case "exit3":
			os.Exit(3)
		case "panic":
			panic("after writing without fsync")
		case "wait":
			time.Sleep(time.Hour)
		}
		fail("unknown ending " + os.Args[3])
	case "check":
		checkFiles()
	case "cycle":
		start, _ := strconv.Atoi(os.Args[2])
		checkFiles()
		write(start, 1<<30)
	case "ops":
		ops()
		fmt.Println("ops ok")
	case "host":
		b, err := os.ReadFile(filepath.Join(dir, "fromhost"))
		check(err)
		fmt.Printf("fromhost: %q\n", b)
		check(os.MkdirAll(filepath.Join(dir, "sub/dir"), 0o755))
		check(os.WriteFile(filepath.Join(dir, "sub/dir/fromguest"), []byte("written in the guest\n"), 0o600))
		f, err := os.Open(filepath.Join(dir, "sub/dir/fromguest"))
		check(err)
		check(f.Sync())
		fmt.Println("host done")
	case "bench":
		mib, _ := strconv.Atoi(os.Args[2])
		bench(mib)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func write(start, n int) {
	for i := start; i < start+n; i++ {
		name := fmt.Sprintf("f%03d", i)
		p := filepath.Join(dir, name)
		// Written under a temporary name and renamed, as careful
		// programs do; fsync of the file, then of the directory.
		f, err := os.OpenFile(p+".tmp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		check(err)
		_, err = f.Write(content(name))
		check(err)
		check(f.Sync())
		check(f.Close())
		check(os.Rename(p+".tmp", p))
		d, err := os.Open(dir)
		check(err)
		check(d.Sync())
		d.Close()
		fmt.Printf("synced %s\n", name)
	}
}

func checkFiles() {
	ents, err := os.ReadDir(dir)
	check(err)
	n := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "f") || strings.HasSuffix(name, ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		check(err)
		if !bytes.Equal(b, content(name)) {
			fail(fmt.Sprintf("BAD %s: %d bytes, want %d", name, len(b), len(content(name))))
		}
		fmt.Printf("ok %s\n", name)
		n++
	}
	fmt.Printf("checked %d\n", n)
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Println("FAIL:", msg)
	os.Exit(1)
}

func want(what string, got, wanted error) {
	if !errors.Is(got, wanted) {
		fail(fmt.Sprintf("%s: %v, want %v", what, got, wanted))
	}
}

func ops() {
	d := filepath.Join(dir, "ops")
	os.RemoveAll(d)
	check(os.Mkdir(d, 0o750))
	st, err := os.Stat(d)
	check(err)
	if !st.IsDir() || st.Mode().Perm() != 0o750 {
		fail(fmt.Sprintf("mkdir: mode %v", st.Mode()))
	}
	want("mkdir again", os.Mkdir(d, 0o755), fs.ErrExist)
	p := filepath.Join(d, "a")
	check(os.WriteFile(p, []byte("hello"), 0o644))
	_, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	want("O_EXCL", err, fs.ErrExist)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	check(err)
	_, err = f.Write([]byte(", world"))
	check(err)
	check(f.Close())
	b, err := os.ReadFile(p)
	check(err)
	if string(b) != "hello, world" {
		fail(fmt.Sprintf("append: %q", b))
	}
	// pread/pwrite and seeking.
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	check(err)
	_, err = f.WriteAt([]byte("J"), 7)
	check(err)
	buf := make([]byte, 5)
	_, err = f.ReadAt(buf, 7)
	check(err)
	if string(buf) != "Jorld" {
		fail(fmt.Sprintf("pread: %q", buf))
	}
	end, err := f.Seek(0, io.SeekEnd)
	check(err)
	if end != 12 {
		fail(fmt.Sprintf("seek end: %d", end))
	}
	check(f.Truncate(5))
	fi, err := f.Stat()
	check(err)
	if fi.Size() != 5 || !fi.Mode().IsRegular() {
		fail(fmt.Sprintf("fstat after truncate: %d %v", fi.Size(), fi.Mode()))
	}
	// A sparse write past the end reads zeros in between.
	_, err = f.WriteAt([]byte("!"), 10000)
	check(err)
	b = make([]byte, 10001)
	n, err := f.ReadAt(b, 0)
	if n != 10001 || string(b[:5]) != "hello" || b[5000] != 0 || b[10000] != '!' {
		fail(fmt.Sprintf("sparse: %d %v", n, err))
	}
	check(f.Close())
	// O_TRUNC, truncate by path.
	check(os.WriteFile(p, []byte("abc"), 0o644))
	check(os.Truncate(p, 1))
	b, _ = os.ReadFile(p)
	if string(b) != "a" {
		fail(fmt.Sprintf("truncate: %q", b))
	}
	// Rename over an existing file; the old name is gone.
	q := filepath.Join(d, "b")
	check(os.WriteFile(q, []byte("old"), 0o644))
	check(os.Rename(p, q))
	_, err = os.Stat(p)
	want("stat after rename", err, fs.ErrNotExist)
	b, _ = os.ReadFile(q)
	if string(b) != "a" {
		fail(fmt.Sprintf("rename: %q", b))
	}
	// Directories: nested, listed, renamed with their contents.
	check(os.MkdirAll(filepath.Join(d, "x/y/z"), 0o755))
	check(os.WriteFile(filepath.Join(d, "x/y/z/f"), []byte("deep"), 0o644))
	check(os.Rename(filepath.Join(d, "x"), filepath.Join(d, "w")))
	b, err = os.ReadFile(filepath.Join(d, "w/y/z/f"))
	check(err)
	if string(b) != "deep" {
		fail("dir rename lost a file")
	}
	want("rmdir non-empty", syscall.Rmdir(filepath.Join(d, "w")), syscall.ENOTEMPTY)
	want("unlink a dir", syscall.Unlink(filepath.Join(d, "w")), syscall.EISDIR)
	want("a file as a directory", os.WriteFile(filepath.Join(q, "c"), nil, 0o644), syscall.ENOTDIR)
	ents, err := os.ReadDir(d)
	check(err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"b", "w"}) {
		fail(fmt.Sprintf("readdir: %q", names))
	}
	// Many entries, listed in batches, and removed while listing.
	for i := 0; i < 300; i++ {
		check(os.WriteFile(filepath.Join(d, fmt.Sprintf("w/many%03d", i)), nil, 0o644))
	}
	ents, err = os.ReadDir(filepath.Join(d, "w"))
	check(err)
	if len(ents) != 301 {
		fail(fmt.Sprintf("readdir of 301: %d", len(ents)))
	}
	// chdir, relative paths, getcwd, openat through a directory.
	check(os.Chdir(filepath.Join(d, "w")))
	wd, err := os.Getwd()
	check(err)
	if wd != filepath.Join(d, "w") {
		fail("getwd: " + wd)
	}
	b, err = os.ReadFile("y/z/f")
	check(err)
	if string(b) != "deep" {
		fail("relative read")
	}
	check(os.Chdir("/"))
	root, err := os.OpenRoot(filepath.Join(d, "w/y"))
	check(err)
	b, err = root.ReadFile("z/f")
	check(err)
	if string(b) != "deep" {
		fail("openat read")
	}
	root.Close()
	// Symbolic links: relative, to a directory, absolute within the
	// mount, dangling, leaving it, not followed.
	l := filepath.Join(d, "l")
	check(os.Symlink("b", l))
	if t, err := os.Readlink(l); err != nil || t != "b" {
		fail(fmt.Sprintf("readlink: %q %v", t, err))
	}
	if b, err = os.ReadFile(l); err != nil || string(b) != "a" {
		fail(fmt.Sprintf("read through a symlink: %q %v", b, err))
	}
	if st, err = os.Lstat(l); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		fail(fmt.Sprintf("lstat: %v %v", st, err))
	}
	check(os.Symlink("w/y", filepath.Join(d, "ld")))
	check(os.Symlink(filepath.Join(d, "w"), filepath.Join(d, "abs")))
	for _, p := range []string{"ld/z/f", "abs/y/z/f", "ld/../w/y/z/f"} {
		if b, err = os.ReadFile(filepath.Join(d, p)); err != nil || string(b) != "deep" {
			fail(fmt.Sprintf("read %s: %q %v", p, b, err))
		}
	}
	check(os.Symlink("nowhere", filepath.Join(d, "dangling")))
	_, err = os.Stat(filepath.Join(d, "dangling"))
	want("stat of a dangling symlink", err, fs.ErrNotExist)
	_, err = syscall.Open(l, syscall.O_RDONLY|syscall.O_NOFOLLOW, 0)
	want("O_NOFOLLOW", err, syscall.ELOOP)
	check(os.Remove(l))
	if _, err = os.Stat(q); err != nil {
		fail("removing a symlink removed its target")
	}
	// mmap: a private copy of the file, zeros after its end.
	f, err = os.Open(filepath.Join(d, "w/y/z/f"))
	check(err)
	m, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ, syscall.MAP_PRIVATE)
	check(err)
	if string(m[:4]) != "deep" || m[4] != 0 || m[4095] != 0 {
		fail(fmt.Sprintf("mmap: %q", m[:8]))
	}
	check(syscall.Munmap(m))
	_, err = syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	want("shared writable mmap of a read-only descriptor", err, syscall.EACCES)
	f.Close()
	// chmod and utimes.
	check(os.Chmod(q, 0o600))
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	check(os.Chtimes(q, mt, mt))
	st, err = os.Stat(q)
	check(err)
	if st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mt) {
		fail(fmt.Sprintf("chmod/chtimes: %v %v", st.Mode(), st.ModTime()))
	}
	// An unlinked open file stays readable.
	f, err = os.Open(q)
	check(err)
	check(os.Remove(q))
	b, err = io.ReadAll(f)
	check(err)
	if string(b) != "a" {
		fail(fmt.Sprintf("read after unlink: %q", b))
	}
	f.Close()
	// os.Root.Chmod: fchmodat2, which refuses a symlink's own mode.
	check(os.WriteFile(filepath.Join(d, "rc"), []byte("x"), 0o644))
	check(os.Symlink("rc", filepath.Join(d, "rcl")))
	root, rerr := os.OpenRoot(d)
	check(rerr)
	check(root.Chmod("rc", 0o600))
	check(root.Chmod("rcl", 0o640)) // follows the link
	root.Close()
	st, err = os.Stat(filepath.Join(d, "rc"))
	check(err)
	if st.Mode().Perm() != 0o640 {
		fail(fmt.Sprintf("mode after os.Root.Chmod: %v", st.Mode()))
	}
	lp, _ := syscall.BytePtrFromString(filepath.Join(d, "rcl"))
	_, _, e := syscall.Syscall6(452, uintptr(^uint(99)), uintptr(unsafe.Pointer(lp)), 0o600, 0x100, 0, 0) // fchmodat2(AT_FDCWD, rcl, 0600, AT_SYMLINK_NOFOLLOW)
	want("fchmodat2 of a symlink", e, syscall.EOPNOTSUPP)
	// A trailing slash on a file is ENOTDIR; mkdir of "link/" is EEXIST,
	// the link dangling or not (it never follows it).
	now := time.Now()
	want("chtimes file/", os.Chtimes(filepath.Join(d, "rc")+"/", now, now), syscall.ENOTDIR)
	want("chown file/", os.Chown(filepath.Join(d, "rc")+"/", 0, 0), syscall.ENOTDIR)
	want("chmod link-to-file/", os.Chmod(filepath.Join(d, "rcl")+"/", 0o600), syscall.ENOTDIR)
	want("mkdir dangling/", os.Mkdir(filepath.Join(d, "dangling")+"/", 0o755), syscall.EEXIST)
	if _, err := os.Stat(filepath.Join(d, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		fail(fmt.Sprintf("mkdir dangling/ made its target: %v", err))
	}
	// Across file systems: EXDEV; no hard or symbolic links.
	if dir == "/data" {
		want("rename to /tmp", os.Rename(filepath.Join(d, "w/y/z/f"), "/tmp/f"), syscall.EXDEV)
		check(os.Symlink("/tmp", filepath.Join(d, "out")))
		_, err = os.Stat(filepath.Join(d, "out/t"))
		want("a symlink leaving /data", err, syscall.EXDEV)
		want("link", os.Link(filepath.Join(d, "w/y/z/f"), filepath.Join(d, "h")), syscall.EPERM)
		// No socket nodes either: bind fails as mknod does, connect
		// finds nothing listening, and /data goes on working after.
		_, err = net.Listen("unix", filepath.Join(d, "sock"))
		want("bind on /data", err, syscall.EPERM)
		_, err = net.Dial("unix", filepath.Join(d, "w/y/z/f"))
		want("connect on /data", err, syscall.ECONNREFUSED)
		check(os.WriteFile(filepath.Join(d, "after-bind"), []byte("x"), 0o644))
	}
	check(os.RemoveAll(d))
	_, err = os.Stat(d)
	want("stat after RemoveAll", err, fs.ErrNotExist)
}

func bench(mib int) {
	p := filepath.Join(dir, "bench")
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	check(err)
	t0 := time.Now()
	for i := 0; i < mib; i++ {
		_, err := f.Write(buf)
		check(err)
	}
	check(f.Sync())
	w := float64(mib) / time.Since(t0).Seconds()
	t0 = time.Now()
	for i := 0; i < mib; i++ {
		_, err := f.ReadAt(buf, int64(i)<<20)
		check(err)
	}
	r := float64(mib) / time.Since(t0).Seconds()
	const reads = 2000
	small := make([]byte, 4096)
	rnd := rand.New(rand.NewSource(1))
	t0 = time.Now()
	for i := 0; i < reads; i++ {
		_, err := f.ReadAt(small, rnd.Int63n(int64(mib)<<8)*4096)
		check(err)
	}
	iops := reads / time.Since(t0).Seconds()
	// fsync latency: a 4 KiB write at a random place, then fsync; the
	// median of 50.
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		_, err := f.WriteAt(small, rnd.Int63n(int64(mib)<<8)*4096)
		check(err)
		t0 = time.Now()
		check(f.Sync())
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	f.Close()
	os.Remove(p)
	fmt.Printf("bench: write %.1f MB/s read %.1f MB/s randread %.0f IOPS fsync %.0f us\n", w, r, iops, float64(lat[len(lat)/2].Microseconds()))
}
