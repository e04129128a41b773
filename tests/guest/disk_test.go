package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/tools/qemu"
	"github.com/amberos/amber/vmm"
)

// The guest's virtio-blk driver against QEMU's virtio-blk device (a
// virtio implementation we did not write), through vmm run --disk under
// --accel tcg; testdata/disk is the guest.

const diskSize = 16 << 20

// diskPattern is testdata/disk's Pattern: the byte expected at off.
func diskPattern(off int64) byte { return byte(off*31 + off>>9 + 7) }

// diskRanges are testdata/disk's writes (ranges, then the sequential one).
func diskRanges(size int64) [][2]int64 {
	return [][2]int64{{0, 1 << 20}, {(1 << 20) + 4000, 300}, {3<<20 + 17, 5}, {size - 700, 700}, {5<<20 + 123, 700_000}, {8 << 20, 3*512 + 11}}
}

func newDisk(t *testing.T, fill byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, diskSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runDisk(t *testing.T, disk string, args ...string) result {
	t.Helper()
	needGuest(t)
	img := image(t, "./testdata/disk")
	// amber.data=off: the program uses /dev/vda itself (else a blank
	// disk becomes /data's store). Leading amber.* arguments are more
	// kernel options.
	opts := []string{"run", "--timeout", "300s", "--cmdline", "amber.data=off"}
	for len(args) > 0 && strings.HasPrefix(args[0], "amber.") {
		opts, args = append(opts, "--cmdline", args[0]), args[1:]
	}
	r := run(t, append(append(opts, "--disk", disk, img, "--"), args...)...)
	r.stdout += r.stderr
	return r
}

func TestDiskWriteThenRead(t *testing.T) {
	disk := newDisk(t, 0xee)
	r := runDisk(t, disk, "write", strconv.Itoa(diskSize))
	if r.code != 0 || !strings.Contains(r.stdout, "disk: write ok") {
		t.Fatalf("write boot: exit %d\n%s", r.code, r.stdout)
	}
	// A request completes by interrupt: boot.VirtioVector, an MSI under
	// Amber's VMM, an IOAPIC input the kernel routes under QEMU.
	if n := diskInterrupts(t, r.stdout); n == 0 {
		t.Errorf("no disk interrupts")
	}
	// The host sees the guest's bytes where it wrote them, and the
	// untouched bytes around them as they were.
	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != diskSize {
		t.Fatalf("the disk file changed size: %d", len(raw))
	}
	written := make([]bool, diskSize)
	for _, rg := range diskRanges(diskSize) {
		for o := rg[0]; o < rg[0]+rg[1]; o++ {
			written[o] = true
			if raw[o] != diskPattern(o) {
				t.Fatalf("byte %d is %#x, want %#x", o, raw[o], diskPattern(o))
			}
		}
	}
	for o, w := range written {
		if !w && raw[o] != 0xee {
			t.Fatalf("byte %d, not written, is %#x", o, raw[o])
		}
	}
	// amber.diskirq=off makes the kernel poll: the queue asks for no
	// interrupts, and none come.
	if r := runDisk(t, disk, "amber.diskirq=off", "write", strconv.Itoa(diskSize)); r.code != 0 || !strings.Contains(r.stdout, "disk: write ok") || diskInterrupts(t, r.stdout) != 0 {
		t.Fatalf("write boot with amber.diskirq=off: exit %d\n%s", r.code, r.stdout)
	}
	// A second boot reads what the first wrote.
	if r := runDisk(t, disk, "verify", strconv.Itoa(diskSize)); r.code != 0 || !strings.Contains(r.stdout, "disk: verify ok") {
		t.Fatalf("verify boot: exit %d\n%s", r.code, r.stdout)
	}
	// A disk the guest did not write fails the check: the test can fail.
	if r := runDisk(t, newDisk(t, 0), "verify", strconv.Itoa(diskSize)); r.code != 1 || !strings.Contains(r.stdout, "differ from the pattern") {
		t.Fatalf("verify of a blank disk: exit %d\n%s", r.code, r.stdout)
	}
}

// diskInterrupts is the interrupt count testdata/disk's write mode
// printed.
func diskInterrupts(t *testing.T, out string) int {
	t.Helper()
	m := regexp.MustCompile(`disk: interrupts (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no interrupt count in\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestDiskReadOnly(t *testing.T) {
	disk := newDisk(t, 0x5a)
	// The patterns the readonly mode reads back.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, rg := range diskRanges(diskSize)[:5] {
		b := make([]byte, rg[1])
		for i := range b {
			b[i] = diskPattern(rg[0] + int64(i))
		}
		f.WriteAt(b, rg[0])
	}
	f.Close()
	before, _ := os.ReadFile(disk)
	r := runDisk(t, disk+",readonly", "readonly")
	if r.code != 0 || !strings.Contains(r.stdout, "disk: readonly ok") {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	after, _ := os.ReadFile(disk)
	if sha256.Sum256(before) != sha256.Sum256(after) {
		t.Fatal("the read-only disk changed")
	}
	// The same guest on a writable disk notices that it is writable.
	if r := runDisk(t, disk, "readonly"); r.code != 1 || !strings.Contains(r.stdout, "want EROFS") {
		t.Fatalf("readonly mode on a writable disk: exit %d\n%s", r.code, r.stdout)
	}
}

func TestDiskBadInput(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(dir, "odd.raw")
	os.WriteFile(odd, make([]byte, 1000), 0o644)
	empty := filepath.Join(dir, "empty.raw")
	os.WriteFile(empty, nil, 0o644)
	good := filepath.Join(dir, "good.raw")
	os.WriteFile(good, make([]byte, 4096), 0o644)
	img := filepath.Join(dir, "no.img") // never opened: --disk is checked first
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--accel", "tcg", "--disk", filepath.Join(dir, "missing.raw")}, exitUsage, "no such file or directory"},
		{[]string{"--accel", "tcg", "--disk", dir}, exitUsage, "is a directory, not a disk image"},
		{[]string{"--accel", "tcg", "--disk", fifo}, exitUsage, "is not a regular file"},
		{[]string{"--accel", "tcg", "--disk", odd}, exitUsage, "whole number of 512-byte sectors"},
		{[]string{"--accel", "tcg", "--disk", empty}, exitUsage, "whole number of 512-byte sectors"},
		{[]string{"--accel", "tcg", "--disk", good + ",rw"}, exitUsage, `unknown option "rw"`},
		{[]string{"--accel", "tcg", "--disk", ""}, 0, ""}, // no disk
	} {
		r := run(t, append(append([]string{"run"}, c.args...), img)...)
		if c.msg == "" {
			if strings.Contains(r.stderr, "--disk") {
				t.Errorf("%v: %s", c.args, r.stderr)
			}
			continue
		}
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, r.code, r.stderr, c.code, c.msg)
		}
	}
	// A disk the VMM cannot open is refused before the guest starts.
	if vmm.KVMAvailable() == nil {
		r := run(t, "run", "--accel", "kvm", "--disk", odd, image(t, "./testdata/disk"))
		if r.code != exitUsage || !strings.Contains(r.stderr, "whole number of 512-byte sectors") {
			t.Errorf("--accel kvm --disk odd: exit %d, stderr %q", r.code, r.stderr)
		}
	}
}

var diskBenchRE = regexp.MustCompile(`disk: bench write ([0-9.]+) MB/s read ([0-9.]+) MB/s`)

// BenchmarkDiskSeqTCG: sequential 1 MiB-block writes (then fsync) and
// reads of 64 MiB on /dev/vda in the guest under QEMU TCG, against the
// same program natively on a raw file in the same directory. The guest
// figures are bound by QEMU's emulation of every guest instruction (the
// bounce-buffer copies included), not by the driver's design; they are
// no measure of what KVM will do.
func BenchmarkDiskSeqTCG(b *testing.B) {
	needQEMU(b)
	img := image(b, "./testdata/disk")
	native := filepath.Join(b.TempDir(), "disk")
	if out, err := exec.Command("go", "build", "-o", native, "./testdata/disk").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	const mib = 64
	disk := filepath.Join(b.TempDir(), "disk.raw")
	if err := os.WriteFile(disk, make([]byte, mib<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	parse := func(out string) (w, r float64) {
		m := diskBenchRE.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no figures in\n%s", out)
		}
		w, _ = strconv.ParseFloat(m[1], 64)
		r, _ = strconv.ParseFloat(m[2], 64)
		return
	}
	for i := 0; i < b.N; i++ {
		g := run(b, "run", "--accel", "tcg", "--mem", "256M", "--timeout", "600s", "--cmdline", "amber.data=off", "--disk", disk, img, "--", "bench", strconv.Itoa(mib))
		if g.code != 0 {
			b.Fatalf("guest: exit %d\n%s%s", g.code, g.stdout, g.stderr)
		}
		gw, gr := parse(g.stdout)
		cmd := exec.Command(native, "bench", strconv.Itoa(mib))
		cmd.Env = append(os.Environ(), "DISK="+disk)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("native: %v\n%s", err, out)
		}
		nw, nr := parse(string(out))
		b.ReportMetric(gw, "tcg-write-MB/s")
		b.ReportMetric(gr, "tcg-read-MB/s")
		b.ReportMetric(nw, "native-write-MB/s")
		b.ReportMetric(nr, "native-read-MB/s")
	}
}

// QEMU's virtio-mmio transports are legacy unless told otherwise: the
// kernel says why it leaves such a disk alone, and the program runs
// without /dev/vda.
func TestDiskLegacyTransportRefused(t *testing.T) {
	bin := needQEMU(t)
	img := image(t, "./testdata/disk")
	args := qemu.Args(qemu.Config{Image: img, Memory: 128 << 20, Options: []string{"amber.argv0=disk"},
		Args: []string{"verify", strconv.Itoa(diskSize)}, Disks: []qemu.Disk{{Path: newDisk(t, 0)}}})
	i := slices.Index(args, "virtio-mmio.force-legacy=false")
	if i < 1 || args[i-1] != "-global" {
		t.Fatalf("no force-legacy=false in %q", args)
	}
	args = slices.Delete(args, i-1, i+1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1<<1|1 {
		t.Fatalf("qemu: %v (want the guest's exit status 1)\n%s", err, out)
	}
	for _, want := range []string{"virtio: device at 0x", "legacy (version 1) virtio-mmio device; virtio 1.x is required", "open /dev/vda: no such file or directory"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A store file's disk object as the disk, on Amber's VMM: what the guest
// wrote and flushed is in the store's vm/disk object, the store passes
// fsck, and a second boot reads it back. QEMU cannot serve such a disk:
// --accel tcg refuses it.
func TestDiskStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "vm.store")
	if r := run(t, "store", "create", store, "--disk-size", "16M"); r.code != 0 {
		t.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
	}
	for _, bad := range []string{"1000", "0", "-1G", "lots"} {
		r := run(t, "store", "create", filepath.Join(t.TempDir(), "bad.store"), "--disk-size", bad)
		if r.code != 2 || !strings.Contains(r.stderr, "--disk-size") {
			t.Errorf("store create --disk-size %s: exit %d, stderr %q", bad, r.code, r.stderr)
		}
	}
	img := image(t, "./testdata/disk")
	if r := run(t, "run", "--accel", "tcg", "--disk", store, img); r.code != exitUsage || !strings.Contains(r.stderr, "served by Amber's VMM only") {
		t.Errorf("--accel tcg with a store disk: exit %d, stderr %q", r.code, r.stderr)
	}
	needKVM(t)
	if r := run(t, "run", "--timeout", "120s", "--cmdline", "amber.data=off", "--disk", store, img, "--", "write", strconv.Itoa(diskSize)); r.code != 0 || !strings.Contains(r.stdout, "disk: write ok") {
		t.Fatalf("write boot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Fatalf("fsck: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	got := filepath.Join(t.TempDir(), "disk.raw")
	if r := run(t, "store", "get", store, "vm/disk", got); r.code != 0 {
		t.Fatalf("store get: exit %d\n%s", r.code, r.stderr)
	}
	raw, err := os.ReadFile(got)
	if err != nil || len(raw) != diskSize {
		t.Fatalf("vm/disk: %d bytes, %v", len(raw), err)
	}
	for _, rg := range diskRanges(diskSize) {
		for o := rg[0]; o < rg[0]+rg[1]; o++ {
			if raw[o] != diskPattern(o) {
				t.Fatalf("vm/disk byte %d is %#x, want %#x", o, raw[o], diskPattern(o))
			}
		}
	}
	if r := run(t, "run", "--timeout", "120s", "--cmdline", "amber.data=off", "--disk", store+",readonly", img, "--", "verify", strconv.Itoa(diskSize)); r.code != 0 || !strings.Contains(r.stdout, "disk: verify ok") {
		t.Fatalf("verify boot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Four goroutines share the disk at once, with a fifth computing. Each
// request's thread sleeps until the disk's interrupt
// (kernel/blkdev.go's vdaWait) and the next waits for the disk to be
// free. Every byte must read back as written. It runs under TCG here
// (QEMU's device, through the IOAPIC) and on Amber's device in the
// nested KVM stage.
func TestDiskConcurrent(t *testing.T) {
	r := runDisk(t, newDisk(t, 0), "concurrent", strconv.Itoa(diskSize))
	if r.code != 0 || !strings.Contains(r.stdout, "disk: concurrent ok") {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	if n := diskInterrupts(t, r.stdout); n == 0 {
		t.Errorf("no disk interrupts")
	}
	needKVM(t) // the rest of the run is the nested stage's, on Amber's device
}

// The disk's completion by interrupt against polling, in one run: both
// modes write and read the same 16 MiB (the figures go to the log for
// docs/benchmarks.md; nothing is timed here), and only the interrupt mode
// takes the disk's interrupts. Under TCG here (QEMU's device), on
// Amber's device in the nested KVM stage.
func TestDiskInterruptVsPolling(t *testing.T) {
	disk := newDisk(t, 0)
	for round := 0; round < 2; round++ {
		for _, mode := range []string{"amber.diskirq=on", "amber.diskirq=off"} {
			r := runDisk(t, disk, mode, "bench", "16")
			m := diskBenchRE.FindStringSubmatch(r.stdout)
			if r.code != 0 || m == nil {
				t.Fatalf("%s: exit %d\n%s", mode, r.code, r.stdout)
			}
			n := diskInterrupts(t, r.stdout)
			if (mode == "amber.diskirq=on") != (n > 0) {
				t.Errorf("%s: %d disk interrupts", mode, n)
			}
			t.Logf("%s: write %s MB/s, read %s MB/s, %d interrupts", mode, m[1], m[2], n)
		}
	}
	needKVM(t) // the nested stage runs it on Amber's device
}
