// Command mmapfile maps files and checks each answer against the one
// Linux gives: MAP_SHARED coherent with read and write through the
// descriptor both ways, MAP_PRIVATE copies, growth with ftruncate after
// mapping, SIGBUS past the end of the file, msync, and the errors for bad
// offsets, access modes and unmappable files. It prints one line per case
// and "ALL OK"; it runs natively too (`go run .`), which is where the
// expected answers come from.
package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"syscall"
)

var failed int

func check(name string, got, want any) {
	g, w := fmt.Sprint(got), fmt.Sprint(want)
	mark := "ok"
	if g != w {
		mark = "FAIL (want " + w + ")"
		failed++
	}
	fmt.Printf("%s: %s %s\n", name, g, mark)
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(syscall.Errno); ok {
		switch e {
		case syscall.EINVAL:
			return "EINVAL"
		case syscall.EACCES:
			return "EACCES"
		case syscall.ENODEV:
			return "ENODEV"
		case syscall.EBADF:
			return "EBADF"
		}
	}
	return err.Error()
}

// touch reads the byte at b[i]; a fault (SIGBUS past the end of a file,
// as Linux raises) comes back as the runtime's panic (SetPanicOnFault)
// with the faulting address.
func touch(b []byte, i int) (r string) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if e := recover(); e != nil {
			r = "fault"
			if a, ok := e.(interface{ Addr() uintptr }); ok && a.Addr() == uintptr(unsafePointer(b[i:])) {
				r += "@addr"
			}
		}
	}()
	return fmt.Sprintf("%d", b[i])
}

func main() {
	dir, err := os.MkdirTemp("", "mmapfile")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	const page = 4096
	name := dir + "/f"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	fd := int(f.Fd())
	f.Write(bytes.Repeat([]byte("abcdefgh"), 3*page/8))

	// MAP_SHARED: the mapping and the descriptor see the same bytes.
	m, err := syscall.Mmap(fd, 0, 3*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	check("mmap shared", errName(err), "ok")
	check("shared reads the file", string(m[page:page+8]), "abcdefgh")
	m[page+1] = 'X'
	buf := make([]byte, 4)
	f.ReadAt(buf, page)
	check("pread sees a store through the mapping", string(buf), "aXcd")
	f.WriteAt([]byte("WXYZ"), 2*page+4)
	check("the mapping sees pwrite", string(m[2*page+4:2*page+8]), "WXYZ")
	check("msync", errName(msync(m, syscall.MS_SYNC)), "ok")
	check("msync with MS_SYNC|MS_ASYNC", errName(msync(m, syscall.MS_SYNC|syscall.MS_ASYNC)), "EINVAL")

	// A second mapping at an offset shares the same pages.
	m2, err := syscall.Mmap(fd, page, page, syscall.PROT_READ, syscall.MAP_SHARED)
	check("mmap shared at offset 4096", errName(err), "ok")
	if err == nil {
		check("two mappings agree", string(m2[0:4]), "aXcd")
		syscall.Munmap(m2)
	}

	// MAP_PRIVATE: a copy; stores stay in it.
	p, err := syscall.Mmap(fd, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	check("mmap private", errName(err), "ok")
	p[0] = 'P'
	f.ReadAt(buf, 0)
	check("a private store does not reach the file", string(buf), "abcd")
	check("the private mapping keeps its store", string(p[0:4]), "Pbcd")
	check("the shared mapping does not see it", string(m[0:4]), "abcd")
	syscall.Munmap(p)

	// Growing the file after mapping: pages past the old end appear.
	g, err := syscall.Mmap(fd, 0, 5*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	check("mmap past the end of the file", errName(err), "ok")
	check("touch a page past the end", touch(g, 4*page), "fault@addr")
	check("ftruncate to 5 pages", errName(syscall.Ftruncate(fd, 5*page)), "ok")
	check("the grown page reads zero", touch(g, 4*page), "0")
	g[4*page+10] = 'G'
	f.ReadAt(buf[:1], 4*page+10)
	check("pread sees a store into the grown page", string(buf[:1]), "G")
	check("ftruncate to 1 page", errName(syscall.Ftruncate(fd, page)), "ok")
	check("touch a page cut off", touch(g, 2*page), "fault@addr")
	check("the first page is still there", string(g[1:4]), "bcd")
	syscall.Ftruncate(fd, 3*page)
	check("a page that came back reads zero", touch(g, 2*page+4), "0")
	syscall.Munmap(g)
	syscall.Munmap(m)

	// The mapping keeps an unlinked file alive.
	u, _ := syscall.Mmap(fd, 0, page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	f.Close()
	os.Remove(name)
	u[5] = '!'
	check("an unlinked, closed file's mapping still works", string(u[3:6]), "de!")
	syscall.Munmap(u)

	// Errors.
	f, _ = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	f.Write(make([]byte, 2*page))
	_, err = syscall.Mmap(int(f.Fd()), 100, page, syscall.PROT_READ, syscall.MAP_SHARED)
	check("offset not page-aligned", errName(err), "EINVAL")
	_, err = syscall.Mmap(int(f.Fd()), 0, page, syscall.PROT_READ, 0)
	check("neither shared nor private", errName(err), "EINVAL")
	f.Close()
	ro, _ := os.Open(name)
	_, err = syscall.Mmap(int(ro.Fd()), 0, page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	check("shared writable mapping of a read-only descriptor", errName(err), "EACCES")
	_, err = syscall.Mmap(int(ro.Fd()), 0, page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	check("private writable mapping of a read-only descriptor", errName(err), "ok")
	ro.Close()
	wo, _ := os.OpenFile(name, os.O_WRONLY, 0)
	_, err = syscall.Mmap(int(wo.Fd()), 0, page, syscall.PROT_READ, syscall.MAP_SHARED)
	check("mapping a write-only descriptor", errName(err), "EACCES")
	wo.Close()
	var pfd [2]int
	syscall.Pipe(pfd[:])
	_, err = syscall.Mmap(pfd[0], 0, page, syscall.PROT_READ, syscall.MAP_SHARED)
	check("mapping a pipe", errName(err), "ENODEV")
	d, _ := os.Open(dir)
	_, err = syscall.Mmap(int(d.Fd()), 0, page, syscall.PROT_READ, syscall.MAP_PRIVATE)
	check("mapping a directory", errName(err), "ENODEV")
	_, err = syscall.Mmap(99, 0, page, syscall.PROT_READ, syscall.MAP_PRIVATE)
	check("mapping a closed descriptor", errName(err), "EBADF")
	z, _ := os.Open("/dev/zero")
	zm, err := syscall.Mmap(int(z.Fd()), 0, page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	check("mapping /dev/zero", errName(err), "ok")
	if err == nil {
		zm[7] = 1
		check("/dev/zero maps as zeros", zm[0]+zm[4095], 0)
	}
	if failed == 0 {
		fmt.Println("ALL OK")
	} else {
		fmt.Println(failed, "FAILED")
		os.Exit(1)
	}
}

func msync(b []byte, flags int) error {
	_, _, e := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafePointer(b)), uintptr(len(b)), uintptr(flags))
	if e != 0 {
		return e
	}
	return nil
}
