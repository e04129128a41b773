// Command disk exercises a disk as a block device file: in the guest
// /dev/vda (virtio-blk), natively any raw file, for the benchmark's
// baseline. Modes (the first argument):
//
//	write SIZE   check the size, write the patterns, fsync, read them back
//	verify SIZE  check the patterns a previous write left
//	readonly     the disk is read-only: opening it for writing fails
//	bench MIB    sequential 1 MiB-block write (then fsync) and read of MIB MiB
//	concurrent SIZE  four goroutines write and read back their own parts
//	             at once while another computes, fsync between
//
// The path is /dev/vda unless DISK names another.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// Pattern is the byte the tests expect at offset off: it differs from
// sector to sector and within each.
func Pattern(off int64) byte { return byte(off*31 + off>>9 + 7) }

// ranges are the writes: an aligned 1 MiB block, a short write across a
// sector boundary, one inside a sector, the last sector's tail, and one
// larger than the kernel's bounce buffer that starts and ends inside a
// sector.
func ranges(size int64) [][2]int64 {
	return [][2]int64{{0, 1 << 20}, {(1 << 20) + 4000, 300}, {3<<20 + 17, 5}, {size - 700, 700}, {5<<20 + 123, 700_000}}
}

func fill(b []byte, off int64) {
	for i := range b {
		b[i] = Pattern(off + int64(i))
	}
}

func main() {
	path := "/dev/vda"
	if p := os.Getenv("DISK"); p != "" {
		path = p
	}
	if len(os.Args) < 2 {
		fail("usage: disk write|verify SIZE | readonly | bench MIB")
	}
	if len(os.Args) > 3 {
		fail(fmt.Sprintf("unexpected arguments %q", os.Args[3:]))
	}
	arg := int64(0)
	if len(os.Args) > 2 {
		var err error
		if arg, err = strconv.ParseInt(os.Args[2], 10, 64); err != nil {
			fail(err.Error())
		}
	}
	switch os.Args[1] {
	case "concurrent":
		concurrent(open(path, os.O_RDWR, arg), arg)
	case "write":
		f := open(path, os.O_RDWR, arg)
		for _, r := range ranges(arg) {
			b := make([]byte, r[1])
			fill(b, r[0])
			if n, err := f.WriteAt(b, r[0]); err != nil || n != len(b) {
				fail(fmt.Sprintf("pwrite %d bytes at %d: %d, %v", len(b), r[0], n, err))
			}
		}
		// At the end: nothing more fits (ENOSPC), a read finds the end.
		if _, err := f.WriteAt([]byte{1}, arg); !errors.Is(err, syscall.ENOSPC) {
			fail(fmt.Sprintf("pwrite at the end: %v, want ENOSPC", err))
		}
		if n, err := f.ReadAt(make([]byte, 10), arg-4); n != 4 || err != io.EOF {
			fail(fmt.Sprintf("pread across the end: %d, %v; want 4, EOF", n, err))
		}
		// A buffer the program does not have: EFAULT, as from Linux.
		for _, nr := range []uintptr{syscall.SYS_PREAD64, syscall.SYS_PWRITE64} {
			if _, _, e := syscall.Syscall6(nr, f.Fd(), 16, 512, 0, 0, 0); e != syscall.EFAULT {
				fail(fmt.Sprintf("syscall %d with a bad buffer: %v, want EFAULT", nr, e))
			}
		}
		if err := f.Sync(); err != nil {
			fail("fsync: " + err.Error())
		}
		check(f)
		// Sequential I/O through the file offset.
		if _, err := f.Seek(8<<20, io.SeekStart); err != nil {
			fail(err.Error())
		}
		b := make([]byte, 3*512+11)
		fill(b, 8<<20)
		if _, err := f.Write(b); err != nil {
			fail(err.Error())
		}
		if pos, _ := f.Seek(0, io.SeekCurrent); pos != 8<<20+int64(len(b)) {
			fail(fmt.Sprintf("offset %d after the write", pos))
		}
		f.Seek(8<<20, io.SeekStart)
		got := make([]byte, len(b))
		if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, b) {
			fail(fmt.Sprintf("read back through the offset: %v", err))
		}
		if err := f.Close(); err != nil {
			fail(err.Error())
		}
		fmt.Println("disk: write ok")
		// The disk's interrupts: under Amber's VMM the device raises
		// boot.VirtioVector per completion; with amber.diskirq=off or
		// under QEMU the driver polls (0).
		n, _, _ := syscall.RawSyscall(boot.SysAmberIRQCount, boot.VirtioVector, 0, 0)
		fmt.Printf("disk: interrupts %d\n", n)
	case "verify":
		f := open(path, os.O_RDONLY, arg)
		check(f)
		fmt.Println("disk: verify ok")
	case "readonly":
		if _, err := os.OpenFile(path, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
			fail(fmt.Sprintf("open for writing: %v, want EROFS", err))
		}
		f, err := os.Open(path)
		if err != nil {
			fail(err.Error())
		}
		if _, err := f.WriteAt([]byte{1}, 0); err == nil {
			fail("a write through a read-only descriptor succeeded")
		}
		var ro int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), 0x125e, uintptr(unsafe.Pointer(&ro))); e != 0 || ro != 1 {
			fail(fmt.Sprintf("BLKROGET: %d, %v", ro, e))
		}
		check(f)
		fmt.Println("disk: readonly ok")
	case "bench":
		bench(path, arg)
	default:
		fail("unknown mode " + os.Args[1])
	}
}

// open opens the disk and checks that fstat, lseek and BLKGETSIZE64 all
// give its size (in the guest; natively a file has only the first two).
func open(path string, flag int, size int64) *os.File {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		fail(err.Error())
	}
	st, err := f.Stat()
	if err != nil {
		fail(err.Error())
	}
	if st.Size() != size {
		fail(fmt.Sprintf("fstat size %d, want %d", st.Size(), size))
	}
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != size {
		fail(fmt.Sprintf("lseek(SEEK_END) %d, %v", end, err))
	}
	if st.Mode()&os.ModeDevice != 0 {
		if st.Mode()&os.ModeCharDevice != 0 {
			fail("a character device, want a block device")
		}
		var n uint64
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), 0x80081272, uintptr(unsafe.Pointer(&n))); e != 0 || int64(n) != size {
			fail(fmt.Sprintf("BLKGETSIZE64 %d, %v", n, e))
		}
	}
	return f
}

// check reads the patterned ranges back.
func check(f *os.File) {
	st, _ := f.Stat()
	for _, r := range ranges(st.Size()) {
		want := make([]byte, r[1])
		fill(want, r[0])
		got := make([]byte, r[1])
		if n, err := f.ReadAt(got, r[0]); n != len(got) || err != nil && err != io.EOF {
			fail(fmt.Sprintf("pread %d at %d: %d, %v", len(got), r[0], n, err))
		}
		if !bytes.Equal(got, want) {
			fail(fmt.Sprintf("the %d bytes at %d differ from the pattern", r[1], r[0]))
		}
	}
}

func bench(path string, mib int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fail(err.Error())
	}
	b := make([]byte, 1<<20)
	fill(b, 0)
	start := time.Now()
	for i := int64(0); i < mib; i++ {
		if _, err := f.WriteAt(b, i<<20); err != nil {
			fail(err.Error())
		}
	}
	if err := f.Sync(); err != nil {
		fail(err.Error())
	}
	w := time.Since(start)
	start = time.Now()
	for i := int64(0); i < mib; i++ {
		if _, err := f.ReadAt(b, i<<20); err != nil {
			fail(err.Error())
		}
	}
	r := time.Since(start)
	fmt.Printf("disk: bench write %.1f MB/s read %.1f MB/s (%d MiB)\n", float64(mib<<20)/w.Seconds()/1e6, float64(mib<<20)/r.Seconds()/1e6, mib)
	if os.Getenv("DISK") == "" { // in the guest
		n, _, _ := syscall.RawSyscall(boot.SysAmberIRQCount, boot.VirtioVector, 0, 0)
		fmt.Printf("disk: interrupts %d\n", n)
	}
}

func fail(msg string) {
	fmt.Println("disk: FAIL", msg)
	os.Exit(1)
}

// concurrent has four goroutines write their own quarter of the disk in
// requests of varied sizes and offsets, fsync, and read it back, all at
// once, while a fifth computes: with interrupts the waiting threads sleep
// and the disk is shared request by request.
func concurrent(f *os.File, size int64) {
	const workers = 4
	part := size / workers
	var spin atomic.Bool
	done := make(chan error, workers)
	go func() {
		x := uint64(1)
		for !spin.Load() {
			x = x*6364136223846793005 + 1442695040888963407
		}
		_ = x
	}()
	for w := int64(0); w < workers; w++ {
		go func() {
			lo, hi := w*part, (w+1)*part
			sizes := []int64{4096, 300_000, 777, 65536, 511, 200_000}
			var spans [][2]int64
			for off, i := lo, int(w); off < hi; i++ {
				n := min(sizes[i%len(sizes)], hi-off)
				spans = append(spans, [2]int64{off, n})
				off += n
			}
			for _, s := range spans {
				b := make([]byte, s[1])
				fill(b, s[0])
				if n, err := f.WriteAt(b, s[0]); err != nil || n != len(b) {
					done <- fmt.Errorf("pwrite %d at %d: %d, %v", len(b), s[0], n, err)
					return
				}
			}
			if err := f.Sync(); err != nil {
				done <- err
				return
			}
			for i := len(spans) - 1; i >= 0; i-- {
				s := spans[i]
				b := make([]byte, s[1])
				if n, err := f.ReadAt(b, s[0]); err != nil || n != len(b) {
					done <- fmt.Errorf("pread %d at %d: %d, %v", len(b), s[0], n, err)
					return
				}
				for j := range b {
					if b[j] != Pattern(s[0]+int64(j)) {
						done <- fmt.Errorf("byte %d reads %#x, want %#x", s[0]+int64(j), b[j], Pattern(s[0]+int64(j)))
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			fail(err.Error())
		}
	}
	spin.Store(true)
	fmt.Println("disk: concurrent ok")
	n, _, _ := syscall.RawSyscall(boot.SysAmberIRQCount, boot.VirtioVector, 0, 0)
	fmt.Printf("disk: interrupts %d\n", n)
}
