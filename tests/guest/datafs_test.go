package guest

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
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

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/vmm"
)

// The persistent file system at /data (kernel/datafs) on QEMU's
// virtio-blk disk through vmm run --accel tcg --disk; testdata/datafs is
// the guest.

const dataDiskSize = 64 << 20

func newDataDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, dataDiskSize); err != nil {
		t.Fatal(err)
	}
	return p
}

func runData(t *testing.T, disk string, args ...string) result {
	t.Helper()
	needQEMU(t)
	img := image(t, "./testdata/datafs")
	r := run(t, append([]string{"run", "--accel", "tcg", "--timeout", "300s", "--disk", disk, img, "--"}, args...)...)
	r.stdout += r.stderr
	return r
}

// superblocksBlank reports whether the disk's first blocks, where a
// store's superblocks are, are all zeros: what the guest takes for a
// blank disk (kernel/datafs's isBlank).
func superblocksBlank(t *testing.T, disk string) bool {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 2*objstore.BlockSize)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// fsckDisk checks the store on the raw disk file from the host.
func fsckDisk(t *testing.T, disk string) {
	t.Helper()
	dev, err := filedev.Open(disk, filedev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if rep := objstore.Fsck(dev); !rep.OK() {
		t.Fatalf("fsck of the guest's store:\n%s", rep)
	}
}

// The file system calls a program makes, checked in the guest against
// what Linux does (testdata/datafs's ops: O_EXCL, O_APPEND, pread and
// pwrite, truncate, rename of files and directories, getdents, chdir,
// openat, chmod, utimes, an unlinked open file, EXDEV, no links), on a
// blank disk that the first boot formats; then the store is clean.
func TestDataOps(t *testing.T) {
	disk := newDataDisk(t)
	r := runData(t, disk, "ops")
	if r.code != 0 || !strings.Contains(r.stdout, "ops ok") {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	fsckDisk(t, disk)
}

// A disk that holds something else is refused, said so, and left as it
// is: the program finds /data unmounted (ENODEV) and /dev/vda usable.
func TestDataRefusesForeignDisk(t *testing.T) {
	disk := newDataDisk(t)
	junk := []byte(strings.Repeat("not a store ", 1000))
	if err := os.WriteFile(disk, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, dataDiskSize); err != nil {
		t.Fatal(err)
	}
	r := runData(t, disk, "check")
	if r.code != 1 || !strings.Contains(r.stdout, "holds something other than an Amber object store") || !strings.Contains(r.stdout, "no such device") {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:len(junk)]) != string(junk) {
		t.Fatal("the refused disk was changed")
	}
}

var syncedRE = regexp.MustCompile(`(?m)^synced (f\d+)\r?$`)

// Crash safety: a guest writes files (each fsynced, then renamed into
// place, then its directory fsynced) and prints each name once its fsync
// returned; QEMU is killed with SIGKILL at a random moment (a power cut:
// nothing the guest wrote after its last flush is guaranteed); the next
// boot checks every file before writing more. Every file reported synced
// must be there, whole, and the store must pass fsck after each kill.
// DATAFS_KILLS sets the number of kill points (20 by default; `make
// stress-data` runs more).
func TestDataCrashSafety(t *testing.T) {
	needQEMU(t)
	img := image(t, "./testdata/datafs")
	kills := 20
	if s := os.Getenv("DATAFS_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		kills = 5
	}
	disk := newDataDisk(t)
	crashCycles(t, crashRun{
		kills: kills,
		cmd: func(k int) *exec.Cmd {
			return exec.Command(vmmBin, "run", "--accel", "tcg", "--timeout", "300s", "--disk", disk, img, "--", "cycle", strconv.Itoa(k*10000))
		},
		// Kill anywhere from the boot to well into the writes.
		delay:  func(rnd *rand.Rand) time.Duration { return time.Duration(300+rnd.Intn(3000)) * time.Millisecond },
		victim: func(cmd *exec.Cmd) int { return qemuChild(cmd.Process.Pid) },
		fsck:   func() { fsckDisk(t, disk) },
		blank:  func() bool { return superblocksBlank(t, disk) },
		final:  func() result { return runData(t, disk, "check") },
	})
}

// crashRun says how TestDataCrashSafety and TestDataCrashSafetyKVM boot
// the guest, when and what they kill, and how they check the disk.
type crashRun struct {
	kills  int
	cmd    func(k int) *exec.Cmd // the k-th boot: testdata/datafs cycle
	delay  func(*rand.Rand) time.Duration
	after  string              // the delay runs from this line of output ("": from the start)
	victim func(*exec.Cmd) int // the pid to SIGKILL, 0 if not there yet
	fsck   func()              // fails the test unless the disk is clean
	blank  func() bool         // whether the disk is still blank (nil: a kill cannot come first)
	final  func() result       // boots testdata/datafs check
}

func crashCycles(t *testing.T, c crashRun) {
	seed := time.Now().UnixNano()
	rnd := rand.New(rand.NewSource(seed))
	t.Logf("seed %d, %d kill points", seed, c.kills)
	synced := map[string]bool{}
	for k := 0; k < c.kills; k++ {
		cmd := c.cmd(k)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := c.delay(rnd)
		lines := make(chan string, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		timer := time.NewTimer(delay)
		if c.after != "" {
			timer.Stop()
		}
		var text strings.Builder
		killed := false
	loop:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break loop
				}
				text.WriteString(l + "\n")
				if c.after != "" && strings.HasPrefix(strings.TrimSpace(l), c.after) && !killed {
					timer.Reset(delay)
				}
			case <-timer.C:
				if pid := c.victim(cmd); pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
					killed = true
				} else {
					timer.Reset(50 * time.Millisecond)
				}
			}
		}
		cmd.Wait()
		got := text.String()
		if strings.Contains(got, "FAIL") || strings.Contains(got, "panic") {
			t.Fatalf("kill %d: the guest failed\n%s", k, got)
		}
		if !killed {
			t.Fatalf("kill %d: the guest ended before the kill\n%s", k, got)
		}
		if strings.Contains(got, "checked ") {
			checkListed(t, k, got, synced)
		}
		for _, m := range syncedRE.FindAllStringSubmatch(got, -1) {
			synced[m[1]] = true
		}
		if len(synced) == 0 && c.blank != nil && c.blank() {
			// Killed before the first boot created the store (a busy
			// host boots slowly): nothing was promised, and the next
			// boot takes the disk for blank and creates it.
			t.Logf("kill %d came before the store was created", k)
			continue
		}
		c.fsck()
	}
	r := c.final()
	if r.code != 0 {
		t.Fatalf("final check: exit %d\n%s", r.code, r.stdout)
	}
	checkListed(t, c.kills, r.stdout, synced)
	t.Logf("%d files fsynced before the kills, all intact", len(synced))
}

// checkListed fails unless every synced file is in the checker's "ok"
// lines (the checker has compared its content already).
func checkListed(t *testing.T, k int, out string, synced map[string]bool) {
	t.Helper()
	ok := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if name, found := strings.CutPrefix(strings.TrimSpace(l), "ok "); found {
			ok[name] = true
		}
	}
	for name := range synced {
		if !ok[name] {
			t.Fatalf("boot %d: %s was fsynced before a kill and is gone\n%s", k, name, out)
		}
	}
}

// qemuChild returns the pid of vmm's QEMU child process, 0 if none yet.
func qemuChild(vmm int) int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(vmm) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(c)
			comm, _ := os.ReadFile("/proc/" + c + "/comm")
			if pid > 0 && strings.HasPrefix(string(comm), "qemu") {
				return pid
			}
		}
	}
	return 0
}

// The host's `vmm store ls/get/put FILE:/data/...` and the guest see the
// same files, both ways, on a raw disk under QEMU.
func TestDataHostAndGuest(t *testing.T) {
	disk := newDataDisk(t)
	hostAndGuest(t, disk, func(args ...string) result { return runData(t, disk, args...) })
	fsckDisk(t, disk)
}

// The same on a store's disk object (vm.store) with Amber's VMM: the
// host's view goes through the outer store to the guest's.
func TestDataHostAndGuestStore(t *testing.T) {
	needKVM(t)
	store := filepath.Join(t.TempDir(), "vm.store")
	if r := run(t, "store", "create", store, "--disk-size", "64M"); r.code != 0 {
		t.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
	}
	img := image(t, "./testdata/datafs")
	hostAndGuest(t, store, func(args ...string) result {
		r := run(t, append([]string{"run", "--timeout", "300s", "--disk", store, img, "--"}, args...)...)
		r.stdout += r.stderr
		return r
	})
	fsckStoreDisk(t, store)
}

func hostAndGuest(t *testing.T, disk string, boot func(args ...string) result) {
	t.Helper()
	if r := boot("write", "3"); r.code != 0 || !strings.Contains(r.stdout, "write done") {
		t.Fatalf("write: exit %d\n%s", r.code, r.stdout)
	}
	r := run(t, "store", "ls", disk+":/data")
	for _, want := range []string{"f000", "7920   ", "f002", "-rw-r--r--"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("store ls: exit %d, no %q\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	r = run(t, "store", "get", disk+":/data/f001")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "f001|f001|") || len(r.stdout) != 7920 {
		t.Fatalf("store get: exit %d, %d bytes\n%.100s%s", r.code, len(r.stdout), r.stdout, r.stderr)
	}
	src := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(src, []byte(`{"from":"host"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = run(t, "store", "put", disk+":/data/fromhost", src); r.code != 0 {
		t.Fatalf("store put: exit %d\n%s", r.code, r.stderr)
	}
	if r = boot("host"); r.code != 0 || !strings.Contains(r.stdout, `fromhost: "{\"from\":\"host\"}"`) {
		t.Fatalf("guest: exit %d\n%s", r.code, r.stdout)
	}
	r = run(t, "store", "get", disk+":/data/sub/dir/fromguest")
	if r.code != 0 || r.stdout != "written in the guest\n" {
		t.Fatalf("store get: exit %d\n%q%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "store", "ls", disk+":/data/sub")
	if r.code != 0 || !strings.Contains(r.stdout, "dir/") || !strings.HasPrefix(r.stdout, "drwxr-xr-x") {
		t.Fatalf("store ls of a directory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "store", "get", disk+":/data/missing"); r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("store get of a missing file: exit %d\n%s", r.code, r.stderr)
	}
	// A disk in use (its lock held, here by this process as a VMM or a
	// host put would) is refused by the VMM before the guest boots.
	held, err := filedev.Open(disk, filedev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r = boot("check")
	held.Close()
	if r.code != exitNotStart || !strings.Contains(r.stdout, "in use by pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("boot on a disk in use: exit %d\n%s", r.code, r.stdout)
	}
}

// storeDev is a disk object opened by vmm as an objstore device (its
// size fixed) for fsck of the guest's store inside it.
type storeDev struct{ vmm.BlockBackend }

func (storeDev) Grow(int64) error { return syscall.ENOSPC }

// nativeBin builds pkg (a guest program) as a native Linux executable,
// the baseline a benchmark runs beside the guest; in the nested KVM stage
// tools/nestkvm has built it on the host (it finds the literal here).
func nativeBin(b testing.TB, pkg string) string {
	b.Helper()
	if prebuilt != "" {
		return filepath.Join(prebuilt, "native", "tests/guest", pkg)
	}
	native := filepath.Join(b.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", native, pkg).CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	return native
}

var (
	exitsRE    = regexp.MustCompile(`vmm: guest ran \S+; exits map\[([^\]]*)\]`)
	requestsRE = regexp.MustCompile(`vmm: disk requests (\d+)`)
)

// exitsAndRequests reads vmm run --boot-time's figures: the VM's exits to
// the VMM (all kinds) and the requests its disk served.
func exitsAndRequests(b testing.TB, out string) (exits, reqs int) {
	b.Helper()
	m, r := exitsRE.FindStringSubmatch(out), requestsRE.FindStringSubmatch(out)
	if m == nil || r == nil {
		b.Fatalf("no exit counts in\n%s", out)
	}
	for _, kv := range strings.Fields(m[1]) {
		if _, v, ok := strings.Cut(kv, ":"); ok {
			n, _ := strconv.Atoi(v)
			exits += n
		}
	}
	reqs, _ = strconv.Atoi(r[1])
	return exits, reqs
}

// BenchmarkDataKVM: testdata/datafs bench on /data through Amber's VMM
// on a store disk (vm.store), under KVM, against the same program as a
// native Linux process with DATA on the file system the store lives on,
// in the same run: sequential 1 MiB writes (then fsync) and reads,
// random 4 KiB reads, the median fsync latency of a 4 KiB write. The
// exits per request are the VM's exits during the bench less those of a
// boot that only mounts and checks /data, over the disk requests in
// between. DATAFS_BENCH_MIB sets the file's size (64 MiB: nested KVM is
// slow). Run nested: go run ./tools/nestkvm -bench DataKVM.
func BenchmarkDataKVM(b *testing.B) {
	needKVM(b)
	img := image(b, "./testdata/datafs")
	native := nativeBin(b, "./testdata/datafs")
	mib := 64
	if s := os.Getenv("DATAFS_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	parse := func(out string) []float64 {
		m := dataBenchRE.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no figures in\n%s", out)
		}
		var f []float64
		for _, s := range m[1:] {
			v, _ := strconv.ParseFloat(s, 64)
			f = append(f, v)
		}
		return f
	}
	for i := 0; i < b.N; i++ {
		store := filepath.Join(b.TempDir(), "vm.store")
		if r := run(b, "store", "create", store, "--disk-size", strconv.Itoa(4*mib)+"M"); r.code != 0 {
			b.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
		}
		boot := func(args ...string) string {
			r := run(b, append([]string{"run", "--boot-time", "--mem", "512M", "--timeout", "1200s", "--disk", store, img, "--"}, args...)...)
			if r.code != 0 {
				b.Fatalf("guest %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
			}
			return r.stdout + r.stderr
		}
		boot("write", "1") // formats the disk
		e0, r0 := exitsAndRequests(b, boot("check"))
		out := boot("bench", strconv.Itoa(mib))
		g := parse(out)
		e1, r1 := exitsAndRequests(b, out)
		cmd := exec.Command(native, "bench", strconv.Itoa(mib))
		cmd.Env = append(os.Environ(), "DATA="+b.TempDir())
		nout, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("native: %v\n%s", err, nout)
		}
		n := parse(string(nout))
		b.ReportMetric(g[0], "guest-write-MB/s")
		b.ReportMetric(g[1], "guest-read-MB/s")
		b.ReportMetric(g[2], "guest-4k-randread-IOPS")
		b.ReportMetric(g[3], "guest-fsync-us")
		b.ReportMetric(n[0], "native-write-MB/s")
		b.ReportMetric(n[1], "native-read-MB/s")
		b.ReportMetric(n[2], "native-4k-randread-IOPS")
		b.ReportMetric(n[3], "native-fsync-us")
		b.ReportMetric(g[0]/n[0], "write-ratio")
		b.ReportMetric(g[1]/n[1], "read-ratio")
		b.ReportMetric(g[2]/n[2], "randread-ratio")
		b.ReportMetric(g[3]/n[3], "fsync-ratio")
		b.ReportMetric(float64(r1-r0), "disk-requests")
		b.ReportMetric(float64(e1-e0)/float64(max(r1-r0, 1)), "exits/request")
	}
}

// fsckStoreDisk checks the outer store (vmm store fsck) and the guest's
// store in its vm/disk object.
func fsckStoreDisk(t *testing.T, store string) {
	t.Helper()
	if r := run(t, "store", "fsck", store); r.code != 0 {
		t.Fatalf("fsck of the outer store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d, err := vmm.OpenStoreDisk(store, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if rep := objstore.Fsck(storeDev{d}); !rep.OK() {
		t.Fatalf("fsck of the guest's store in vm/disk:\n%s", rep)
	}
}

// TestDataCrashSafety through Amber's own VMM on a store disk (vmm run
// --disk vm.store) under KVM: the VMM process itself is killed with
// SIGKILL 0.3 to 5.3 s after the boot's check ended, into the writes:
// the device's write cache (the outer store's open transaction) is lost
// as at a power cut. After each kill the outer store
// and the guest's store in its vm/disk pass fsck, and every file whose
// fsync returned is intact. Nested KVM is slow: 4 kill points
// (DATAFS_KVM_KILLS sets more).
func TestDataCrashSafetyKVM(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/datafs")
	kills := 4
	if s := os.Getenv("DATAFS_KVM_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	store := filepath.Join(t.TempDir(), "vm.store")
	if r := run(t, "store", "create", store, "--disk-size", "64M"); r.code != 0 {
		t.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
	}
	crashCycles(t, crashRun{
		kills: kills,
		cmd: func(k int) *exec.Cmd {
			return exec.Command(vmmBin, "run", "--timeout", "300s", "--disk", store, img, "--", "cycle", strconv.Itoa(k*10000))
		},
		after:  "checked ",
		delay:  func(rnd *rand.Rand) time.Duration { return time.Duration(300+rnd.Intn(5000)) * time.Millisecond },
		victim: func(cmd *exec.Cmd) int { return cmd.Process.Pid },
		fsck:   func() { fsckStoreDisk(t, store) },
		final: func() result {
			r := run(t, "run", "--timeout", "300s", "--disk", store, img, "--", "check")
			r.stdout += r.stderr
			return r
		},
	})
}

// vmm test --disk: the tests' TMPDIR is /data/tmp on the disk (made
// from the host on the blank disk before the boot), and what they leave
// on /data the host reads afterwards.
func TestTestDisk(t *testing.T) {
	needGuest(t)
	disk := newDataDisk(t)
	r := run(t, "test", "--timeout", "300s", "--pack", "package", "--disk", disk, "./testdata/tmpdata", "--", "-test.v")
	if r.code != 0 || !strings.Contains(r.stdout, "--- PASS: TestTempDirOnData") {
		t.Fatalf("vmm test --disk: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "store", "get", disk+":/data/kept"); r.code != 0 || r.stdout != "kept" {
		t.Fatalf("store get: exit %d, %q%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "test", "--disk", disk, "--env", "TMPDIR", "./testdata/tmpdata"); r.code != exitUsage || !strings.Contains(r.stderr, "want KEY=VALUE") {
		t.Fatalf("--env without =: exit %d\n%s", r.code, r.stderr)
	}
	fsckDisk(t, disk)
}

var dataBenchRE = regexp.MustCompile(`bench: write ([0-9.]+) MB/s read ([0-9.]+) MB/s randread ([0-9.]+) IOPS fsync ([0-9.]+) us`)

// BenchmarkDataSeqTCG: sequential 1 MiB writes (then fsync) and reads and
// 4 KiB random reads of one file on /data, in the guest under QEMU's
// emulator, against the same program natively on a file of the host's
// file system. The guest's figures are TCG-bound (every instruction of
// the kernel, the service and objstore's checksums is emulated): they
// measure QEMU, not the design.
func BenchmarkDataSeqTCG(b *testing.B) {
	needQEMU(b)
	img := image(b, "./testdata/datafs")
	native := filepath.Join(b.TempDir(), "datafs")
	if out, err := exec.Command("go", "build", "-o", native, "./testdata/datafs").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	const mib = 32
	parse := func(out string) (w, r, iops float64) {
		m := dataBenchRE.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no figures in\n%s", out)
		}
		w, _ = strconv.ParseFloat(m[1], 64)
		r, _ = strconv.ParseFloat(m[2], 64)
		iops, _ = strconv.ParseFloat(m[3], 64)
		return
	}
	for i := 0; i < b.N; i++ {
		disk := filepath.Join(b.TempDir(), "data.raw")
		if err := os.WriteFile(disk, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(disk, 4*mib<<20); err != nil {
			b.Fatal(err)
		}
		g := run(b, "run", "--accel", "tcg", "--mem", "512M", "--timeout", "600s", "--disk", disk, img, "--", "bench", strconv.Itoa(mib))
		if g.code != 0 {
			b.Fatalf("guest: exit %d\n%s%s", g.code, g.stdout, g.stderr)
		}
		gw, gr, gi := parse(g.stdout + g.stderr)
		cmd := exec.Command(native, "bench", strconv.Itoa(mib))
		cmd.Env = append(os.Environ(), "DATA="+b.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("native: %v\n%s", err, out)
		}
		nw, nr, ni := parse(string(out))
		b.ReportMetric(gw, "tcg-write-MB/s")
		b.ReportMetric(gr, "tcg-read-MB/s")
		b.ReportMetric(gi, "tcg-4k-randread-IOPS")
		b.ReportMetric(nw, "native-write-MB/s")
		b.ReportMetric(nr, "native-read-MB/s")
		b.ReportMetric(ni, "native-4k-randread-IOPS")
	}
}

// amber.data= moves the mount point; a read-only disk is mounted
// read-only: its files read, writes fail with EROFS.
func TestDataMountPointAndReadOnly(t *testing.T) {
	needQEMU(t)
	disk := newDataDisk(t)
	img := image(t, "./testdata/datafs")
	r := run(t, "run", "--accel", "tcg", "--timeout", "300s", "--disk", disk, "--cmdline", "amber.data=/srv/files", "--env", "DATA=/srv/files", img, "--", "write", "2")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "write done") {
		t.Fatalf("write under /srv/files: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runData(t, disk+",readonly", "check")
	if r.code != 0 || !strings.Contains(r.stdout, "checked 2") {
		t.Fatalf("check on a read-only disk: exit %d\n%s", r.code, r.stdout)
	}
	r = runData(t, disk+",readonly", "write", "1")
	if r.code != 1 || !strings.Contains(r.stdout, "read-only file system") {
		t.Fatalf("write on a read-only disk: exit %d\n%s", r.code, r.stdout)
	}
	fsckDisk(t, disk)
}

// What a program wrote on /data without fsync survives its exit, as on
// Linux: datafs.AtExit commits when main returns and in os.Exit (the
// runtime's exit hook) before the VM powers off. The files are written
// well within the five seconds of the periodic commit, so without the
// exit's commit the next boot finds none. A panic is not committed (the
// runtime stops every goroutine first, docs/kernel.md, "Durability"):
// the store is the last commit's, clean, every file in it intact.
func TestDataExitCommits(t *testing.T) {
	for _, c := range []struct {
		how  string
		code int
		want string // the check's count; "" for any
	}{{"return", 0, "checked 6\n"}, {"exit3", 3, "checked 6\n"}, {"panic", 2, ""}} {
		t.Run(c.how, func(t *testing.T) {
			disk := newDataDisk(t)
			r := runData(t, disk, "nosync", "6", c.how)
			if r.code != c.code || !strings.Contains(r.stdout, "written without fsync") {
				t.Fatalf("exit %d, want %d\n%s", r.code, c.code, r.stdout)
			}
			fsckDisk(t, disk)
			r = runData(t, disk, "check")
			if r.code != 0 || !strings.Contains(r.stdout, "checked ") || !strings.Contains(r.stdout, c.want) {
				t.Fatalf("after the exit: exit %d\n%s", r.code, r.stdout)
			}
		})
	}
}

// Ctrl-C (vmm run's SIGINT) kills a program that does not handle it, and
// what it wrote on /data without fsync survives: the kernel holds the
// host's signal until the service has committed (kernel/datafile.go,
// dataHoldSignals). Amber's VMM delivers host signals, so KVM only.
func TestDataCtrlCCommits(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/datafs")
	store := filepath.Join(t.TempDir(), "vm.store")
	if r := run(t, "store", "create", store, "--disk-size", "64M"); r.code != 0 {
		t.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
	}
	cmd := exec.Command(vmmBin, "run", "--timeout", "300s", "--disk", store, img, "--", "nosync", "6", "wait")
	var out bytes.Buffer
	cmd.Stdout = &syncWriter{b: &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxPolls && !strings.Contains(cmd.Stdout.(*syncWriter).String(), "written without fsync"); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, cmd); code != exitInterrupted {
		t.Fatalf("exit %d, want %d\n%s", code, exitInterrupted, cmd.Stdout.(*syncWriter).String())
	}
	fsckStoreDisk(t, store)
	r := run(t, "run", "--timeout", "300s", "--disk", store, img, "--", "check")
	if r.code != 0 || !strings.Contains(r.stdout, "checked 6\n") {
		t.Fatalf("after Ctrl-C: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
