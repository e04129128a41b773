package kernel

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// The file system's core runs on the host too: its "physical" pages come
// from an ordinary buffer, user memory is this process's memory. Calls
// that would block (pipes without data) are not exercised here; the
// guest tests in tests/guest do that.

var fsTestRAM []byte // keeps the page pool alive

func fsTestSetup(t *testing.T) {
	t.Helper()
	if fsTestRAM == nil {
		fsTestRAM = make([]byte, 64<<20+pageSize)
	}
	base := (uintptr(unsafe.Pointer(&fsTestRAM[0])) + pageSize - 1) &^ (pageSize - 1)
	clear(fsTestRAM)
	physNext, physEnd = base, base+64<<20
	hostedTest = true // no page tables: user memory is this process's
	freeList, nfree = 0, 0
	inodePages = [len(inodePages)]uintptr{}
	inodeHigh, inodeFree, fsInited = 1, 0, false
	for i := 3; i < maxFDs; i++ {
		fds[i] = fdent{}
	}
	for i := 3; i < maxOFDs; i++ {
		ofiles[i] = ofile{}
	}
	pipes = [maxPipes]pipeT{}
	umaskBits = 0o022
	fsReady()
}

// cstr returns the address of a NUL-terminated copy of s.
func cstr(s string) uint64 {
	b := append([]byte(s), 0)
	keep = append(keep, b)
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

var keep [][]byte

func sys(fn sysHandler, args ...uint64) int64 {
	var f sysFrame
	regs := []*uint64{&f.rdi, &f.rsi, &f.rdx, &f.r10, &f.r8, &f.r9}
	for i, a := range args {
		*regs[i] = a
	}
	return fn(&f)
}

const cwd = uint64(1<<64 - 100) // AT_FDCWD as a register value

func buf(n int) ([]byte, uint64) {
	b := make([]byte, n)
	keep = append(keep, b)
	return b, uint64(uintptr(unsafe.Pointer(&b[0])))
}

func stat(t *testing.T, path string) (statT, int64) {
	t.Helper()
	var st statT
	r := sys(sysNewfstatat, cwd, cstr(path), uint64(uintptr(unsafe.Pointer(&st))), 0)
	return st, r
}

func readAll(t *testing.T, path string) string {
	t.Helper()
	fd := sys(sysOpenat, cwd, cstr(path), oRdonly, 0)
	if fd < 0 {
		t.Fatalf("open %s: errno %d", path, -fd)
	}
	defer sys(sysClose, uint64(fd))
	var out []byte
	b, a := buf(3000)
	for {
		n := sys(sysRead, uint64(fd), a, uint64(len(b)))
		if n < 0 {
			t.Fatalf("read %s: errno %d", path, -n)
		}
		if n == 0 {
			return string(out)
		}
		out = append(out, b[:n]...)
	}
}

func writeFile(t *testing.T, path, data string, flags uint64) {
	t.Helper()
	fd := sys(sysOpenat, cwd, cstr(path), oWronly|oCreat|flags, 0o666)
	if fd < 0 {
		t.Fatalf("open %s: errno %d", path, -fd)
	}
	if data != "" {
		if n := sys(sysWrite, uint64(fd), cstr(data), uint64(len(data))); n != int64(len(data)) {
			t.Fatalf("write %s: %d", path, n)
		}
	}
	sys(sysClose, uint64(fd))
}

func listDir(t *testing.T, path string) string {
	t.Helper()
	fd := sys(sysOpenat, cwd, cstr(path), oRdonly|oDirectory, 0)
	if fd < 0 {
		t.Fatalf("open %s: errno %d", path, -fd)
	}
	defer sys(sysClose, uint64(fd))
	var names []string
	b, a := buf(100) // small: several getdents calls
	for {
		n := sys(sysGetdents64, uint64(fd), a, uint64(len(b)))
		if n < 0 {
			t.Fatalf("getdents %s: errno %d", path, -n)
		}
		if n == 0 {
			return strings.Join(names, " ")
		}
		for off := 0; off < int(n); {
			reclen := int(b[off+16]) | int(b[off+17])<<8
			name := b[off+19 : off+reclen]
			names = append(names, string(name[:strings.IndexByte(string(name), 0)]))
			off += reclen
		}
	}
}

func TestPageAllocatorReuse(t *testing.T) {
	fsTestSetup(t)
	p := allocPage()
	*u64at(p + 8) = 42
	freePage(p)
	if q := allocPage(); q != p || *u64at(p + 8) != 0 || *u64at(p) != 0 {
		t.Fatalf("freed page %#x not reused zeroed (got %#x)", p, q)
	}
}

func TestFSFilesAndDirectories(t *testing.T) {
	fsTestSetup(t)
	if r := sys(sysMkdirat, cwd, cstr("/tmp/d"), 0o777); r != 0 {
		t.Fatalf("mkdir: %d", r)
	}
	if r := sys(sysMkdirat, cwd, cstr("/tmp/d"), 0o777); r != -eEXIST {
		t.Fatalf("mkdir again: %d, want EEXIST", r)
	}
	writeFile(t, "/tmp/d/a", "hello", 0)
	writeFile(t, "/tmp/d/a", " world", oAppend)
	if got := readAll(t, "/tmp/d/a"); got != "hello world" {
		t.Fatalf("content %q", got)
	}
	// A file spanning index pages, then truncated.
	big := strings.Repeat("0123456789", 300000)
	writeFile(t, "/tmp/d/big", big, oTrunc)
	if got := readAll(t, "/tmp/d/big"); got != big {
		t.Fatalf("big file: %d bytes back", len(got))
	}
	before := freeBytes()
	if r := sys(sysTruncate, cstr("/tmp/d/big"), 5000); r != 0 {
		t.Fatalf("truncate: %d", r)
	}
	if freeBytes() <= before {
		t.Errorf("truncate gave no pages back")
	}
	if got := readAll(t, "/tmp/d/big"); got != big[:5000] {
		t.Fatalf("truncated content differs")
	}
	for i := 0; i < 40; i++ { // several directory pages
		writeFile(t, fmt.Sprintf("/tmp/d/f%02d", i), "", 0)
	}
	names := listDir(t, "/tmp/d")
	if !strings.HasPrefix(names, ". .. a big f00 f01") || !strings.HasSuffix(names, "f39") {
		t.Fatalf("getdents: %s", names)
	}
	if r := sys(sysUnlinkat, cwd, cstr("/tmp/d"), atRemovedir); r != -eNOTEMPTY {
		t.Fatalf("rmdir non-empty: %d", r)
	}
	if r := sys(sysRenameat2, cwd, cstr("/tmp/d/a"), cwd, cstr("/tmp/d/big"), renameNoreplace); r != -eEXIST {
		t.Fatalf("RENAME_NOREPLACE: %d", r)
	}
	if r := sys(sysRename, cstr("/tmp/d/a"), cstr("/tmp/d/big")); r != 0 {
		t.Fatalf("rename: %d", r)
	}
	if got := readAll(t, "/tmp/d/big"); got != "hello world" {
		t.Fatalf("after rename: %q", got)
	}
	if r := sys(sysRename, cstr("/tmp/d"), cstr("/tmp/d/sub")); r != -eINVAL {
		t.Fatalf("rename into itself: %d", r)
	}
	// Hard and symbolic links.
	if r := sys(sysLink, cstr("/tmp/d/big"), cstr("/tmp/h")); r != 0 {
		t.Fatalf("link: %d", r)
	}
	if st, _ := stat(t, "/tmp/h"); st.nlink != 2 {
		t.Fatalf("nlink %d", st.nlink)
	}
	sys(sysSymlink, cstr("d/big"), cstr("/tmp/s"))
	sys(sysSymlink, cstr("/tmp/loop"), cstr("/tmp/loop"))
	if _, r := stat(t, "/tmp/loop"); r != -eLOOP {
		t.Fatalf("stat of a loop: %d", r)
	}
	if st, _ := stat(t, "/tmp/s"); st.size != 11 || st.mode&sIFMT != sIFREG {
		t.Fatalf("stat through symlink: %+v", st)
	}
	b, a := buf(64)
	if n := sys(sysReadlink, cstr("/tmp/s"), a, 64); string(b[:n]) != "d/big" {
		t.Fatalf("readlink: %q", b[:max(n, 0)])
	}
	// Working directory, relative paths, getcwd.
	if r := sys(sysChdir, cstr("/tmp/d")); r != 0 {
		t.Fatalf("chdir: %d", r)
	}
	if got := readAll(t, "../s"); got != "hello world" {
		t.Fatalf("relative through symlink: %q", got)
	}
	if n := sys(sysGetcwd, a, 64); n != 7 || string(b[:6]) != "/tmp/d" {
		t.Fatalf("getcwd: %d %q", n, b[:6])
	}
	sys(sysChdir, cstr("/"))
	// Errors.
	if _, r := stat(t, "/tmp/d/big/x"); r != -eNOTDIR {
		t.Fatalf("ENOTDIR: %d", r)
	}
	if r := sys(sysOpenat, cwd, cstr("/tmp/h"), oCreat|oExcl|oWronly, 0); r != -eEXIST {
		t.Fatalf("O_EXCL: %d", r)
	}
	if r := sys(sysOpenat, cwd, cstr("/tmp/s"), oNofollow, 0); r != -eLOOP {
		t.Fatalf("O_NOFOLLOW: %d", r)
	}
	if r := sys(sysOpenat, cwd, cstr("/tmp/d"), oWronly, 0); r != -eISDIR {
		t.Fatalf("dir for writing: %d", r)
	}
	if r := sys(sysOpenat, cwd, cstr("/"+strings.Repeat("x", 256)), oRdonly, 0); r != -eNAMETOOLONG {
		t.Fatalf("long name: %d", r)
	}
	fd := sys(sysOpenat, cwd, cstr("/tmp/h"), oRdonly, 0)
	var ev epollEvent
	ep := sys(sysEpollCreate1, 0)
	if r := sys(sysEpollCtl, uint64(ep), epollCtlAdd, uint64(fd), uint64(uintptr(unsafe.Pointer(&ev)))); r != -ePERM {
		t.Fatalf("epoll_ctl on a regular file: %d, want EPERM", r)
	}
}

func TestFSPipeNonblocking(t *testing.T) {
	fsTestSetup(t)
	var p [2]int32
	if r := sys(sysPipe2, uint64(uintptr(unsafe.Pointer(&p))), oNonblock); r != 0 {
		t.Fatalf("pipe2: %d", r)
	}
	b, a := buf(pipeSize + 100)
	if n := sys(sysWrite, uint64(p[1]), a, uint64(len(b))); n != pipeSize {
		t.Fatalf("write into an empty pipe: %d, want %d", n, pipeSize)
	}
	if n := sys(sysWrite, uint64(p[1]), a, 1); n != -eAGAIN {
		t.Fatalf("write into a full pipe: %d", n)
	}
	if n := sys(sysRead, uint64(p[0]), a, 10); n != 10 {
		t.Fatalf("read: %d", n)
	}
	sys(sysClose, uint64(p[1]))
	if n := sys(sysRead, uint64(p[0]), a, uint64(len(b))); n != pipeSize-10 {
		t.Fatalf("drain: %d", n)
	}
	if n := sys(sysRead, uint64(p[0]), a, 1); n != 0 {
		t.Fatalf("EOF: %d", n)
	}
	before := freeBytes()
	sys(sysClose, uint64(p[0]))
	if freeBytes() != before+pageSize {
		t.Errorf("closing the pipe gave back %d bytes", freeBytes()-before)
	}
}

func TestFSLoadCpio(t *testing.T) {
	fsTestSetup(t)
	var ar []byte
	add := func(name string, mode uint32, data string) {
		h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			1, mode, 0, 0, 1, 1_000_000_000, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ar = append(ar, h...)
		ar = append(ar, name...)
		ar = append(ar, 0)
		for len(ar)%4 != 0 {
			ar = append(ar, 0)
		}
		ar = append(ar, data...)
		for len(ar)%4 != 0 {
			ar = append(ar, 0)
		}
	}
	add("etc", sIFDIR|0o755, "")
	add("./etc/app.conf", sIFREG|0o600, "key=value\n")
	add("etc/link", sIFLNK|0o777, "app.conf")
	add("TRAILER!!!", 0, "")
	if r := sys(sysAmberLoadFiles, uint64(uintptr(unsafe.Pointer(&ar[0]))), uint64(len(ar))); r != 3 {
		t.Fatalf("load: %d", r)
	}
	if got := readAll(t, "/etc/link"); got != "key=value\n" {
		t.Fatalf("packed file through packed link: %q", got)
	}
	st, _ := stat(t, "/etc/app.conf")
	if st.mode != sIFREG|0o600 || st.mtime.sec != 1_000_000_000 {
		t.Fatalf("mode %o mtime %d", st.mode, st.mtime.sec)
	}
}
