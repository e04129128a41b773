// Command efault hands the kernel bad addresses and absurd lengths through
// raw system calls and checks that each call fails the way Linux's does
// (EFAULT, ENOMEM, EPERM, a short count) while the program carries on. It
// prints one line per case and "ALL OK" when every answer was the expected
// one. It runs natively on Linux too (`go run .`), which is how the
// expected answers were checked.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

const (
	bad          = 0xdeadbeef000         // canonical, never mapped
	nonCanon     = 0xdead_0000_0000_0000 // not a canonical address
	pageSize     = 4096
	atFdcwd      = ^uintptr(99) // AT_FDCWD, -100
	archSetFS    = 0x1002
	archGetFS    = 0x1003
	sysGetrandom = 318
)

var names = map[syscall.Errno]string{
	syscall.EFAULT: "EFAULT", syscall.EINVAL: "EINVAL", syscall.ENOMEM: "ENOMEM",
	syscall.EPERM: "EPERM", syscall.EBADF: "EBADF", syscall.ENOENT: "ENOENT",
	syscall.ENOSYS: "ENOSYS", syscall.EAGAIN: "EAGAIN", syscall.ENAMETOOLONG: "ENAMETOOLONG",
}

func show(r uintptr, e syscall.Errno) string {
	if e != 0 {
		if n, ok := names[e]; ok {
			return n
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	return fmt.Sprintf("n=%d", int64(r))
}

func sys(nr uintptr, a ...uintptr) string {
	var v [6]uintptr
	copy(v[:], a)
	r, _, e := syscall.RawSyscall6(nr, v[0], v[1], v[2], v[3], v[4], v[5])
	return show(r, e)
}

var failed int

// Everything whose address the kernel gets lives in the heap or in
// globals: a stack-allocated buffer may move while its address sits in a
// uintptr.
var (
	keep [][]byte
	buf  [256]byte
	p    [2]int32
	word uint32
	st   syscall.Stat_t
	iov  [1]syscall.Iovec
	ev   syscall.EpollEvent
	pfd  [1]pollFd
)

type pollFd struct {
	fd             int32
	events, revent int16
}

func check(name, got, want string) {
	if got != want {
		failed++
		fmt.Printf("FAIL %s: %s, want %s\n", name, got, want)
		return
	}
	fmt.Printf("%s: %s\n", name, got)
}

func must(r uintptr, e syscall.Errno) uintptr {
	if e != 0 {
		fmt.Println("setup failed:", e)
		os.Exit(1)
	}
	return r
}

func raw(nr uintptr, a ...uintptr) uintptr {
	var v [6]uintptr
	copy(v[:], a)
	r, _, e := syscall.RawSyscall6(nr, v[0], v[1], v[2], v[3], v[4], v[5])
	return must(r, e)
}

func cstr(s string) uintptr {
	b := append([]byte(s), 0)
	keep = append(keep, b)
	return uintptr(unsafe.Pointer(&b[0]))
}

// edge returns the address of an unmapped page that follows a mapped one.
func edge() uintptr {
	base := raw(syscall.SYS_MMAP, 0, 2*pageSize, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON, ^uintptr(0), 0)
	raw(syscall.SYS_MMAP, base, pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_FIXED, ^uintptr(0), 0)
	return base + pageSize
}

func main() {
	var u syscall.Utsname
	syscall.Uname(&u)
	var rel []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	amber := strings.Contains(string(rel), "amber")
	e := edge()
	mapped := e - pageSize
	b0 := uintptr(unsafe.Pointer(&buf[0]))

	// Reads and writes.
	check("write from 0xdeadbeef000", sys(syscall.SYS_WRITE, 1, bad, 100), "EFAULT")
	check("write of 0 bytes from 0xdeadbeef000", sys(syscall.SYS_WRITE, 1, bad, 0), "n=0")
	check("write from a non-canonical address", sys(syscall.SYS_WRITE, 1, nonCanon, 100), "EFAULT")
	check("write from a wrapping range", sys(syscall.SYS_WRITE, 1, ^uintptr(0)-10, 100), "EFAULT")
	raw(syscall.SYS_PIPE2, uintptr(unsafe.Pointer(&p[0])), 0)
	raw(syscall.SYS_WRITE, uintptr(p[1]), cstr("hello"), 5)
	check("read from a pipe into an unmapped page", sys(syscall.SYS_READ, uintptr(p[0]), e, 5), "EFAULT")
	got := sys(syscall.SYS_READ, uintptr(p[0]), b0, 5)
	check("the pipe still holds its data", got+" "+string(buf[:5]), "n=5 hello")
	check("write to a pipe from an unmapped page", sys(syscall.SYS_WRITE, uintptr(p[1]), e, 5), "EFAULT")
	zero := raw(syscall.SYS_OPENAT, atFdcwd, cstr("/dev/zero"), syscall.O_RDONLY)
	check("read /dev/zero into an unmapped page", sys(syscall.SYS_READ, zero, e, 100), "EFAULT")
	check("read /dev/zero into a range that runs into one", sys(syscall.SYS_READ, zero, e-10, 100), "n=10")
	hosts := raw(syscall.SYS_OPENAT, atFdcwd, cstr("/etc/hosts"), syscall.O_RDONLY)
	check("read a file into an unmapped page", sys(syscall.SYS_READ, hosts, e, 10), "EFAULT")
	check("the file offset did not move", sys(syscall.SYS_LSEEK, hosts, 0, 1), "n=0")
	check("pread into 0xdeadbeef000", sys(syscall.SYS_PREAD64, hosts, bad, 10, 0), "EFAULT")
	tmp := raw(syscall.SYS_OPENAT, atFdcwd, cstr("/tmp/efault"), syscall.O_RDWR|syscall.O_CREAT|syscall.O_TRUNC, 0o644)
	check("write a file from a range that runs into an unmapped page", sys(syscall.SYS_WRITE, tmp, e-10, 100), "n=10")
	raw(syscall.SYS_FSTAT, tmp, uintptr(unsafe.Pointer(&st)))
	check("the file holds what was written", fmt.Sprintf("size=%d", st.Size), "size=10")
	// Mapped, but the kernel's (on Linux: not mapped at all).
	check("write from the boot page tables (0x30000)", sys(syscall.SYS_WRITE, 1, 0x30000, 100), "EFAULT")
	check("read /dev/zero into the exception stacks (0x40000)", sys(syscall.SYS_READ, zero, 0x40000, 100), "EFAULT")
	check("read /dev/zero into the page pool (16 MiB)", sys(syscall.SYS_READ, zero, 16<<20, 100), "EFAULT")
	check("readv with the iovec array unmapped", sys(syscall.SYS_READV, hosts, bad, 1), "EFAULT")
	iov[0] = syscall.Iovec{Base: (*byte)(at(bad)), Len: 10}
	check("writev of an unmapped buffer", sys(syscall.SYS_WRITEV, 1, uintptr(unsafe.Pointer(&iov[0])), 1), "EFAULT")

	// Path names and metadata.
	check("openat with the path unmapped", sys(syscall.SYS_OPENAT, atFdcwd, bad, syscall.O_RDONLY), "EFAULT")
	copy(unsafe.Slice((*byte)(at(e-7)), 7), "/etc/ho")
	check("openat with a path that runs into an unmapped page", sys(syscall.SYS_OPENAT, atFdcwd, e-7, syscall.O_RDONLY), "EFAULT")
	check("stat into 0xdeadbeef000", sys(syscall.SYS_NEWFSTATAT, atFdcwd, cstr("/"), bad, 0), "EFAULT")
	check("fstat into 0xdeadbeef000", sys(syscall.SYS_FSTAT, 1, bad), "EFAULT")
	check("mkdir with the path unmapped", sys(syscall.SYS_MKDIRAT, atFdcwd, bad, 0o755), "EFAULT")
	check("symlink with the target unmapped", sys(syscall.SYS_SYMLINKAT, bad, atFdcwd, cstr("/tmp/efault-link")), "EFAULT")
	check("readlink into 0xdeadbeef000", sys(syscall.SYS_READLINKAT, atFdcwd, cstr("/proc/self/exe"), bad, 100), "EFAULT")
	check("utimensat with the times unmapped", sys(syscall.SYS_UTIMENSAT, atFdcwd, cstr("/tmp"), bad, 0), "EFAULT")
	check("getcwd into 0xdeadbeef000", sys(syscall.SYS_GETCWD, bad, 100), "EFAULT")
	root := raw(syscall.SYS_OPENAT, atFdcwd, cstr("/"), syscall.O_RDONLY|syscall.O_DIRECTORY)
	check("getdents64 into 0xdeadbeef000", sys(syscall.SYS_GETDENTS64, root, bad, 4096), "EFAULT")
	check("getdents64 still lists the directory", ok(sys(syscall.SYS_GETDENTS64, root, b0, 256)), "ok")

	// Time.
	check("nanosleep with the timespec unmapped", sys(syscall.SYS_NANOSLEEP, bad, 0), "EFAULT")
	check("clock_nanosleep with the timespec unmapped", sys(syscall.SYS_CLOCK_NANOSLEEP, 1, 0, bad, 0), "EFAULT")
	check("clock_gettime into 0xdeadbeef000", sys(syscall.SYS_CLOCK_GETTIME, 1, bad), "EFAULT")
	check("clock_getres into 0xdeadbeef000", sys(syscall.SYS_CLOCK_GETRES, 1, bad), "EFAULT")
	check("gettimeofday into 0xdeadbeef000", sys(syscall.SYS_GETTIMEOFDAY, bad, 0), "EFAULT")
	check("time into 0xdeadbeef000", sys(syscall.SYS_TIME, bad), "EFAULT")

	// Futexes.
	const futexWaitPrivate = 128
	check("futex wait on 0xdeadbeef000", sys(syscall.SYS_FUTEX, bad, futexWaitPrivate, 0, 0), "EFAULT")
	check("futex wait with the timeout unmapped", sys(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(&word)), futexWaitPrivate, 0, bad), "EFAULT")

	// Memory.
	const rw, anon = syscall.PROT_READ | syscall.PROT_WRITE, syscall.MAP_PRIVATE | syscall.MAP_ANON
	check("mmap of -1 bytes", sys(syscall.SYS_MMAP, 0, ^uintptr(0), rw, anon, ^uintptr(0), 0), "ENOMEM")
	check("mmap of -4096 bytes", sys(syscall.SYS_MMAP, 0, ^uintptr(pageSize-1), rw, anon, ^uintptr(0), 0), "ENOMEM")
	check("mmap of 2^62 bytes", sys(syscall.SYS_MMAP, 0, 1<<62, rw, anon, ^uintptr(0), 0), "ENOMEM")
	check("mmap of 2^46 bytes", sys(syscall.SYS_MMAP, 0, 1<<46, rw, anon, ^uintptr(0), 0), "ENOMEM")
	check("mmap of -1 bytes, PROT_NONE", sys(syscall.SYS_MMAP, 0, ^uintptr(0), syscall.PROT_NONE, anon, ^uintptr(0), 0), "ENOMEM")
	check("mmap MAP_FIXED past the end of user space", sys(syscall.SYS_MMAP, 0x7f00_0000_0000, 1<<40, rw, anon|syscall.MAP_FIXED, ^uintptr(0), 0), "ENOMEM")
	check("mprotect of 2^62 bytes", sys(syscall.SYS_MPROTECT, bad, 1<<62, rw), "ENOMEM")
	check("mprotect of a page never mapped", sys(syscall.SYS_MPROTECT, bad, pageSize, rw), "ENOMEM")
	check("madvise of a wrapping range", sys(syscall.SYS_MADVISE, mapped, -mapped, 4), "EINVAL")
	if amber {
		// Linux zaps every mapping above the start and then says
		// ENOMEM: not something to do to a live process natively.
		check("madvise(DONTNEED) of 2^62 bytes", sys(syscall.SYS_MADVISE, e, 1<<62, 4), "ENOMEM")
	}
	check("munmap of 2^62 bytes", sys(syscall.SYS_MUNMAP, mapped, 1<<62), "EINVAL")
	check("getrandom of 2^40 bytes into a page before an unmapped one", sys(sysGetrandom, e-10, 1<<40, 0), "n=10")
	check("getrandom of 2^40 bytes into 0xdeadbeef000", sys(sysGetrandom, bad, 1<<40, 0), "EFAULT")
	check("getrandom into an unmapped page", sys(sysGetrandom, e, 16, 0), "EFAULT")

	// The thread pointer.
	check("arch_prctl(ARCH_SET_FS) to a non-canonical address", sys(syscall.SYS_ARCH_PRCTL, archSetFS, nonCanon), "EPERM")
	if amber {
		// Linux takes any canonical base (the program then dies at its
		// next use of it); Amber's entry reads g from -8(FS), so it
		// refuses a base with nothing mapped there.
		check("arch_prctl(ARCH_SET_FS) to an unmapped address", sys(syscall.SYS_ARCH_PRCTL, archSetFS, bad), "EFAULT")
	}
	check("arch_prctl(ARCH_GET_FS) into 0xdeadbeef000", sys(syscall.SYS_ARCH_PRCTL, archGetFS, bad), "EFAULT")

	// Signals.
	const sigusr1 = 10
	check("rt_sigaction with the action unmapped", sys(syscall.SYS_RT_SIGACTION, sigusr1, bad, 0, 8), "EFAULT")
	check("rt_sigaction with the old action unmapped", sys(syscall.SYS_RT_SIGACTION, sigusr1, 0, bad, 8), "EFAULT")
	check("rt_sigprocmask with the set unmapped", sys(syscall.SYS_RT_SIGPROCMASK, 0, bad, 0, 8), "EFAULT")
	check("rt_sigprocmask with the old set unmapped", sys(syscall.SYS_RT_SIGPROCMASK, 0, 0, bad, 8), "EFAULT")
	check("sigaltstack with the stack unmapped", sys(syscall.SYS_SIGALTSTACK, bad, 0), "EFAULT")
	check("sigaltstack with the old stack unmapped", sys(syscall.SYS_SIGALTSTACK, 0, bad), "EFAULT")

	// Descriptors, polling and the rest.
	check("pipe2 into 0xdeadbeef000", sys(syscall.SYS_PIPE2, bad, 0), "EFAULT")
	check("poll of an unmapped array", sys(syscall.SYS_POLL, bad, 1, 0), "EFAULT")
	pfd[0] = pollFd{fd: p[0], events: 1}
	check("ppoll with the timeout unmapped", sys(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd[0])), 1, bad, 0, 8), "EFAULT")
	ep := raw(syscall.SYS_EPOLL_CREATE1, 0)
	check("epoll_ctl with the event unmapped", sys(syscall.SYS_EPOLL_CTL, ep, syscall.EPOLL_CTL_ADD, uintptr(p[0]), bad), "EFAULT")
	ev = syscall.EpollEvent{Events: syscall.EPOLLIN}
	raw(syscall.SYS_EPOLL_CTL, ep, syscall.EPOLL_CTL_ADD, uintptr(p[0]), uintptr(unsafe.Pointer(&ev)))
	raw(syscall.SYS_WRITE, uintptr(p[1]), cstr("x"), 1)
	check("epoll_wait into 0xdeadbeef000", sys(syscall.SYS_EPOLL_WAIT, ep, bad, 1, 0), "EFAULT")
	check("epoll_wait still reports the event", sys(syscall.SYS_EPOLL_WAIT, ep, b0, 1, 0), "n=1")
	efd := raw(syscall.SYS_EVENTFD2, 0, 0)
	check("eventfd write from 0xdeadbeef000", sys(syscall.SYS_WRITE, efd, bad, 8), "EFAULT")
	check("ioctl(FIONBIO) with the argument unmapped", sys(syscall.SYS_IOCTL, 0, 0x5421, bad), "EFAULT")
	check("fcntl(F_GETLK) with the lock unmapped", sys(syscall.SYS_FCNTL, tmp, syscall.F_GETLK, bad), "EFAULT")
	check("uname into 0xdeadbeef000", sys(syscall.SYS_UNAME, bad), "EFAULT")
	check("sched_getaffinity into 0xdeadbeef000", sys(syscall.SYS_SCHED_GETAFFINITY, 0, 128, bad), "EFAULT")
	check("prlimit64 with the old limit unmapped", sys(syscall.SYS_PRLIMIT64, 0, syscall.RLIMIT_NOFILE, 0, bad), "EFAULT")
	check("prlimit64 with the new limit unmapped", sys(syscall.SYS_PRLIMIT64, 0, syscall.RLIMIT_NOFILE, bad, 0), "EFAULT")

	if amber {
		// The exception table behind the checks, reached through Amber's
		// amber_uaccess_probe, which copies without checking first.
		const probe, read, write, zero = 502, 0, 1, 2
		check("exception table: read from 0xdeadbeef000", sys(probe, bad, 64, read), "EFAULT")
		check("exception table: write to 0xdeadbeef000", sys(probe, bad, 64, write), "EFAULT")
		check("exception table: zero 0xdeadbeef000", sys(probe, bad, 64, zero), "EFAULT")
		check("exception table: read from a non-canonical address (#GP)", sys(probe, nonCanon, 8, read), "EFAULT")
		check("exception table: read up to an unmapped page", sys(probe, e-40, 64, read), "n=32")
		check("exception table: write up to an unmapped page", sys(probe, e-40, 64, write), "n=32")
		check("exception table: read from the program's memory", sys(probe, b0, 64, read), "n=64")
	}

	if failed > 0 {
		fmt.Printf("%d FAILED\n", failed)
		os.Exit(1)
	}
	fmt.Println("ALL OK")
}

func ok(s string) string {
	if strings.HasPrefix(s, "n=") && s != "n=0" {
		return "ok"
	}
	return s
}

// at turns an address the program did not get from Go into a pointer.
func at(addr uintptr) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(nil), addr) }
