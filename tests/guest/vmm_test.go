package guest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/tools/build"
	"github.com/amberos/amber/tools/build/elfpatch"
	"github.com/amberos/amber/tools/guestrun"
	"github.com/amberos/amber/vmm"
	"golang.org/x/sys/unix"
)

// These tests build real images and boot them in real KVM microVMs through
// the vmm binary, as a user would.

var (
	vmmBin    string
	imgDir    string
	imgMu     sync.Mutex
	imgs      = map[string]string{}
	kvmReason error

	// How runGuest boots: KVM, or QEMU TCG where /dev/kvm is not usable.
	guestAccel  guestrun.Accel
	guestReason error

	// The vmm binary and images built on the host for the nested KVM
	// stage (tools/nestkvm), whose Linux has no Go toolchain: set only
	// there.
	prebuilt = os.Getenv("AMBER_TEST_PREBUILT")
)

// vmmLDFlags are the Makefile's VMM_LDFLAGS: the vmm binary's heap gets
// no transparent huge pages.
const vmmLDFlags = "-X=runtime.godebugDefault=disablethp=1"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmm-test-")
	if err != nil {
		panic(err)
	}
	vmmBin = filepath.Join(dir, "vmm")
	imgDir = dir
	if prebuilt != "" {
		vmmBin = filepath.Join(prebuilt, "bin", "vmm")
	} else {
		// Static and without huge pages on its heap, as the Makefile
		// builds it (the benchmarks measure its start and its memory).
		build := exec.Command("go", "build", "-ldflags="+vmmLDFlags, "-o", vmmBin, "../../tools/vmm")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			os.Stderr.Write(out)
			panic(err)
		}
	}
	kvmReason = vmm.KVMAvailable()
	guestAccel, guestReason = guestrun.Detect()
	if guestAccel == guestrun.TCG {
		// vmm run and vmm test, as the tests start them, use QEMU.
		os.Setenv("AMBER_ACCEL", string(guestrun.TCG))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needGuest skips a test that boots guests through vmm run when neither
// KVM nor QEMU can run them; with QEMU only, AMBER_ACCEL=tcg is set.
func needGuest(t testing.TB) {
	t.Helper()
	if guestReason != nil {
		t.Skip(guestReason)
	}
}

func needKVM(t testing.TB) {
	t.Helper()
	if kvmReason != nil {
		t.Skipf("cannot boot guests here: %v; this test runs on nested KVM in tools/nestkvm (make kvmtest)", kvmReason)
	}
}

// image builds ./testdata/NAME (or a package path) once per test run.
func image(t testing.TB, pkg string) string {
	t.Helper()
	imgMu.Lock()
	defer imgMu.Unlock()
	if p, ok := imgs[pkg]; ok {
		return p
	}
	if prebuilt != "" {
		p := filepath.Join(prebuilt, "img", filepath.Join("tests/guest", pkg)+".img")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s was not built for the nested KVM stage (tools/nestkvm builds the packages tests name as literals): %v", pkg, err)
		}
		return p
	}
	sub := filepath.Join(imgDir, strings.NewReplacer("/", "_", ".", "_").Replace(pkg))
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(sub, filepath.Base(pkg)+".img")
	cmd := exec.Command(vmmBin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vmm build %s: %v\n%s", pkg, err, b)
	}
	imgs[pkg] = out
	return out
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command(vmmBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vmm %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// runImage boots pkg's image with vmm run: on KVM, or under QEMU's
// emulator where only that can run it. There the serial console carries
// both streams, so the result's stdout and stderr both hold everything
// the guest printed.
func runImage(t testing.TB, pkg string, args ...string) result {
	t.Helper()
	needGuest(t)
	img := image(t, pkg)
	if guestAccel == guestrun.TCG {
		r := run(t, append([]string{"run", "--timeout", "300s", img}, args...)...)
		r.stdout += r.stderr
		r.stderr = r.stdout
		return r
	}
	return run(t, append([]string{"run", "--timeout", "60s", img}, args...)...)
}

// runGuest boots pkg's image on KVM through vmm run when /dev/kvm is
// usable and otherwise under QEMU's emulator, for tests whose checks hold
// on both: the exit status and what the guest printed (under QEMU the
// serial console carries stderr too, so it is in stdout).
func runGuest(t testing.TB, pkg string, c guestrun.Config) result {
	t.Helper()
	if guestReason != nil {
		t.Skip(guestReason)
	}
	c.VMM, c.Image = vmmBin, image(t, pkg)
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
		if guestAccel == guestrun.TCG {
			c.Timeout = 300 * time.Second
		}
	}
	r, err := guestrun.Run(context.Background(), guestAccel, c)
	if err != nil {
		t.Fatalf("booting %s on %s: %v", pkg, guestAccel, err)
	}
	if r.TimedOut {
		t.Fatalf("%s on %s did not finish within %v\n%s", pkg, guestAccel, c.Timeout, r.Output())
	}
	return result{r.Stdout, r.Stderr, r.Status}
}

func expect(t *testing.T, r result, code int, stdoutHas ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdoutHas {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

func TestHello(t *testing.T) {
	r := runImage(t, "../../apps/hello")
	expect(t, r, 0, "Hello from Amber! (go1.26", "linux/amd64, 1 CPU)")
	if guestAccel == guestrun.KVM && r.stderr != "" {
		t.Errorf("unexpected stderr: %s", r.stderr)
	}
}

func TestExitStatus(t *testing.T) {
	expect(t, runGuest(t, "./testdata/exit3", guestrun.Config{}), 3, "exiting with 3")
}

func TestPanicExits2WithMessage(t *testing.T) {
	r := runImage(t, "./testdata/panics")
	expect(t, r, 2)
	for _, s := range []string{"panic: boom from the guest", "goroutine 1 [running]:", "main.main()"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func TestArgsAndEnv(t *testing.T) {
	needGuest(t)
	img := image(t, "./testdata/argsenv")
	r := run(t, "run", "--env", "AMBER_GREETING=hi", "--env", `SPACED=a b "c" \d`, "--env", "my.var=1", img, "--", "x", "y z", "-flag", "")
	expect(t, r, 0,
		`args=["x" "y z" "-flag" ""]`,
		`AMBER_GREETING="hi"`,
		`SPACED="a b \"c\" \\d"`,
		`my.var="1"`, // a dotted name is not a kernel option (issue 8)
		"argv0=argsenv\n")
}

func TestGoroutinesChannelsSleep(t *testing.T) {
	// 100 goroutines pass tokens around a ring 20 times; every message
	// counted: sum = 2170 + 99*190 + 20*(0+...+98) = 118000.
	expect(t, runGuest(t, "./testdata/goroutines", guestrun.Config{}), 0, "total=118000 elapsed_ok=true")
}

func TestBigAllocationAndGC(t *testing.T) {
	r := runGuest(t, "./testdata/bigalloc", guestrun.Config{})
	expect(t, r, 0, "sum=2088960 gcs=")
	if strings.Contains(r.stdout, "gcs=0") {
		t.Errorf("runtime.GC did not run: %s", r.stdout)
	}
}

// TestLeafSyscalls: getpid and gettid, which the system-call entry answers
// without building a frame, agree with the full path on every call of six
// threads that preempt each other while signals to the process are
// pending (testdata/leafcalls).
func TestLeafSyscalls(t *testing.T) {
	r := runGuest(t, "./testdata/leafcalls", guestrun.Config{})
	expect(t, r, 0, "leafcalls: 6 threads x 300000 calls agree")
}

func TestStraySyscall(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/straysyscall")
	// SYSCALL lands at LSTAR at CPL3 only on kvm_pvm; with hardware
	// virtualization (SVM, VMX) it enters LSTAR at CPL0, where the kernel
	// cannot run (the nested KVM stage showed a triple fault), so vmm run
	// picks ud there by default and the lstar mode is tried only on kvm_pvm.
	modes := []string{"ud"}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		modes = append(modes, "lstar")
	} else {
		// Asked for anyway, it is refused with a reason before the guest runs.
		r := run(t, "run", "--syscall-trap", "lstar", img)
		if r.code == 0 || !strings.Contains(r.stderr, "needs a kvm_pvm host") {
			t.Errorf("--syscall-trap lstar without kvm_pvm: exit %d, stderr %q; want a refusal", r.code, r.stderr)
		}
	}
	for _, mode := range modes {
		r := run(t, "run", "--syscall-trap", mode, img)
		expect(t, r, 0, "pid=1 sysname=Linux")
	}
}

func TestStdin(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/cat")
	cmd := exec.Command(vmmBin, "run", "--timeout", "60s", img)
	// Input that arrives while the guest waits, then end of input.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pr
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	pw.Write([]byte("hello\n"))
	time.Sleep(100 * time.Millisecond)
	pw.Write([]byte("amber guest\nlast line without newline"))
	pw.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if want := "HELLO\nAMBER GUEST\nLAST LINE WITHOUT NEWLINE\n3 lines\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	// No stdin at all is end of input.
	expect(t, run(t, "run", img), 0, "0 lines")
}

func TestOtherModule(t *testing.T) {
	needGuest(t)
	dir := filepath.Join(t.TempDir(), "othermod")
	if err := os.CopyFS(dir, os.DirFS("testdata/othermod")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "other.img")
	cmd := exec.Command(vmmBin, "build", "-o", img, dir)
	cmd.Dir = t.TempDir() // not inside either module
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vmm build of another module: %v\n%s", err, out)
	}
	expect(t, run(t, "run", img, "--", "-name", "amber"), 0, "hello amber from another module")
}

func TestNoSyscallOutsideKernel(t *testing.T) {
	f, err := elf.Open(image(t, "../../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sites, err := elfpatch.ScanSyscalls(f, build.IsKernelSymbol)
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 0 {
		t.Errorf("SYSCALL instructions outside the kernel: %v", sites)
	}
	// The check has teeth: the same scan finds the stray site of x/sys.
	f2, err := elf.Open(image(t, "./testdata/straysyscall"))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	sites, err = elfpatch.ScanSyscalls(f2, build.IsKernelSymbol)
	if err != nil || len(sites) == 0 || !strings.HasPrefix(sites[0].Symbol, "golang.org/x/sys/unix.") {
		t.Errorf("scan of an x/sys/unix program: sites %v, err %v; want one in golang.org/x/sys/unix", sites, err)
	}
}

func TestCrashReport(t *testing.T) {
	// A fault the program blocks kills it (as on Linux): exit 128+SIGILL,
	// with the VMM's report of where it happened.
	needKVM(t) // the report is the VMM's
	r := runImage(t, "./testdata/crashud2")
	if r.code != 128+4 {
		t.Fatalf("exit status %d, want %d (killed by SIGILL)\nstderr:\n%s", r.code, 128+4, r.stderr)
	}
	for _, s := range []string{"fatal signal", "invalid opcode", "UD2", "registers:", "rip", "main.ud2", "main.inner()", "main.middle()", "main.main()", "crashud2/main.go:"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("crash report lacks %q:\n%s", s, r.stderr)
		}
	}
}

// A bad address handed to the kernel makes the call fail with EFAULT, as
// on Linux, and the program goes on; a fault in the kernel outside its
// user-copy routines (a kernel bug) still stops the VM with a report.
func TestBadAddressToKernel(t *testing.T) {
	r := runGuest(t, "./testdata/badptr", guestrun.Config{})
	expect(t, r, 0, "write from 0xdead0000: bad address", "still running")
	r = runGuest(t, "./testdata/badptr", guestrun.Config{Args: []string{"kernelbug"}})
	if out := r.stdout + r.stderr; r.code != vmm.ExitCrash || !strings.Contains(out, "fault in the kernel") || strings.Contains(out, "not reached") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// System calls given bad addresses and absurd lengths fail the way
// Linux's do (testdata/efault checks each answer, natively too).
func TestBadArgumentsFailLikeLinux(t *testing.T) {
	r := runGuest(t, "./testdata/efault", guestrun.Config{})
	expect(t, r, 0,
		"write from 0xdeadbeef000: EFAULT",
		"read from a pipe into an unmapped page: EFAULT",
		"openat with a path that runs into an unmapped page: EFAULT",
		"nanosleep with the timespec unmapped: EFAULT",
		"futex wait on 0xdeadbeef000: EFAULT",
		"mmap of -1 bytes: ENOMEM",
		"getrandom of 2^40 bytes into a page before an unmapped one: n=10",
		"arch_prctl(ARCH_SET_FS) to a non-canonical address: EPERM",
		"arch_prctl(ARCH_SET_FS) to an unmapped address: EFAULT",
		"exception table: read from a non-canonical address (#GP): EFAULT",
		"ALL OK")
}

func TestFaultsBecomeSignals(t *testing.T) {
	r := runImage(t, "./testdata/faults")
	expect(t, r, 0,
		"nil: recovered: runtime error: invalid memory address or nil pointer dereference",
		"div: recovered: runtime error: integer divide by zero",
		"float: 1.5000",
		"got signal: user defined signal 1")
	if n := strings.Count(r.stdout, "loop: recovered: runtime error: invalid memory address"); n != 100 {
		t.Errorf("%d of 100 repeated faults recovered", n)
	}
	// With the runtime's handler in place, an undefined instruction is
	// reported by the Go runtime itself.
	r = runImage(t, "./testdata/sigill")
	if r.code != 2 || !strings.Contains(r.stderr, "SIGILL: illegal instruction") || !strings.Contains(r.stderr, "main.main()") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestTimeoutStopsAHungGuest(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/spin")
	// The report shows where the guest was: in spinForever once it printed
	// "spinning". A slow host (nested KVM under load) may still be booting
	// after 1s; then the timeout doubles. Without the tick: the report's
	// backtrace follows frame pointers only, so a stop inside the tick's
	// handler names runtime.main, not spinForever, and on nested KVM the
	// late ticks take much of the guest's time.
	for timeout := time.Second; ; timeout *= 2 {
		start := time.Now()
		r := run(t, "run", "--cmdline", "amber.tick=off", "--timeout", timeout.String(), img)
		if r.code != vmm.ExitCrash || !strings.Contains(r.stderr, "did not finish within "+timeout.String()) {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if d := time.Since(start); d > timeout+30*time.Second {
			t.Errorf("took %v to stop after %v", d, timeout)
		}
		if strings.Contains(r.stdout, "spinning") || timeout >= time.Minute {
			if !strings.Contains(r.stderr, "main.spinForever") {
				t.Errorf("the report does not show main.spinForever; stdout %q, stderr:\n%s", r.stdout, r.stderr)
			}
			return
		}
	}
}

// maxPolls bounds the 25 ms polls that wait for a guest: two minutes,
// which only a guest that never gets there uses up (a slow host, such as
// KVM nested under QEMU's emulator, takes seconds to boot).
const maxPolls = 4800

// startVMM starts `vmm run` on an image and waits until its stdout shows
// want.
func startVMM(t *testing.T, img, want string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(vmmBin, "run", img)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &syncWriter{b: &stdout}, &syncWriter{b: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxPolls && !strings.Contains(cmd.Stdout.(*syncWriter).String(), want); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	return cmd, &stdout, &stderr
}

type syncWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Len()
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(maxPolls * 25 * time.Millisecond):
		cmd.Process.Kill()
		t.Fatal("vmm did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func TestCtrlCReachesTheGuest(t *testing.T) {
	needKVM(t)
	// A program with signal.Notify(os.Interrupt) gets SIGINT.
	cmd, stdout, stderr := startVMM(t, image(t, "./testdata/sigint"), "waiting for SIGINT")
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, cmd); code != 0 || !strings.Contains(stdout.String(), "got interrupt") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	// A program without a handler dies of it: 128+SIGINT.
	cmd, stdout, stderr = startVMM(t, image(t, "./testdata/spin"), "spinning")
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, cmd); code != 130 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestSecondCtrlCStopsTheVM(t *testing.T) {
	needKVM(t)
	// Two Ctrl-Cs 200 ms apart: the guest ends on the first (it waits for
	// SIGINT) or, if it has not yet when the second comes, the second stops
	// the VM. Either way vmm reports a status; it is never killed by the
	// signal (exit -1: the second Ctrl-C came during the teardown).
	cmd, _, stderr := startVMM(t, image(t, "./testdata/sigint"), "waiting for SIGINT")
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	code := waitExit(t, cmd)
	if code != 0 && (code != vmm.ExitInterrupted || !strings.Contains(stderr.String(), "interrupted")) {
		t.Errorf("exit %d, stderr: %s", code, stderr.String())
	}
}

// A pointer-rich workload with the collector running: the kernel must
// give back zeroed memory for MADV_DONTNEED (the runtime relies on it) and
// preserve every register and page across switches.
func TestGCStress(t *testing.T) {
	expect(t, runGuest(t, "./testdata/gcstress", guestrun.Config{Args: []string{"2s"}}), 0, "gcstress ok")
}

func TestExecutable(t *testing.T) {
	expect(t, runGuest(t, "./testdata/exepath", guestrun.Config{}), 0, "/exepath <nil>")
}

func TestPoll(t *testing.T) {
	expect(t, runGuest(t, "./testdata/polltest", guestrun.Config{}), 0, "empty: n=0 waited=true", "written: n=1 revents=1")
}

func TestTorture(t *testing.T) {
	r := runGuest(t, "./testdata/torture", guestrun.Config{Mem: "512M"})
	expect(t, r, 0, "ok ticker", "ok gc-while-spinning", "ok sleep-accuracy", "ok nil-panic", "ok div-panic",
		"ok deep-recursion", "ok 10k-goroutines", "ok timers-select", "ok sync-cond", "ok finalizers", "torture: all passed")
}

func TestBadImages(t *testing.T) {
	dir := t.TempDir()
	hello := image(t, "../../apps/hello")
	raw, err := os.ReadFile(hello)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	native := filepath.Join(dir, "native")
	if out, err := exec.Command("go", "build", "-o", native, "../../apps/hello").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// A PT_NOTE whose p_filesz is far beyond the file: it panicked the
	// VMM in makeslice (2^63-1) or ran it out of memory (2^40).
	noteSize := func(size uint64) []byte {
		f, err := elf.NewFile(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(raw)
		phoff := binary.LittleEndian.Uint64(b[0x20:])
		for i, p := range f.Progs {
			if p.Type == elf.PT_NOTE {
				binary.LittleEndian.PutUint64(b[phoff+uint64(i)*56+32:], size)
			}
		}
		return b
	}
	fifo := filepath.Join(dir, "fifo.img")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"truncated", write("trunc.img", raw[:len(raw)/3]), "truncated"},
		{"note size 2^63-1", write("note63.img", noteSize(1<<63-1)), "extends past the end of the file"},
		{"note size 2^40", write("note40.img", noteSize(1<<40)), "extends past the end of the file"},
		{"FIFO", fifo, "is a named pipe (FIFO), not an image file"},
		{"device", "/dev/zero", "is a device, not an image file"},
		{"header only", write("short.img", raw[:100]), "malformed or truncated ELF"},
		{"not ELF", write("text.img", []byte("#!/bin/sh\necho hi\n")), "is not an ELF file"},
		{"empty", write("empty.img", nil), "is not an ELF file"},
		{"directory", dir, "is a directory"},
		{"no kernel", native, "has no Amber kernel"},
		{"missing", filepath.Join(dir, "nope.img"), "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, "run", c.path)
			if r.code != exitNotStart || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitNotStart, c.want)
			}
		})
	}
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{{"run", "--mem", "lots", hello}, {"run", "--env", "NOEQUALS", hello}, {"run"}, {"frobnicate"}} {
			if r := run(t, args...); r.code != exitUsage || r.stderr == "" {
				t.Errorf("vmm %v: exit %d, stderr %q", args, r.code, r.stderr)
			}
		}
	})
}

// TestLeastMemory: hello boots and exits 0 with exactly the memory its
// image says it needs (MinMemory), and 2 MiB less is refused with an
// error that names the amount, before anything boots.
func TestLeastMemory(t *testing.T) {
	needGuest(t)
	img := image(t, "../../apps/hello")
	im, err := vmm.OpenImage(img)
	if err != nil {
		t.Fatal(err)
	}
	least := im.MinMemory()
	im.Close()
	if least > 8<<20 {
		t.Errorf("hello needs %d MiB, want at most 8 (issue 14)", least>>20)
	}
	r := run(t, "run", "--mem", fmt.Sprintf("%dM", least>>20), img)
	if r.code != 0 || !strings.Contains(r.stdout, "Hello from Amber!") {
		t.Errorf("--mem %dM: exit %d, stdout %q, stderr %q", least>>20, r.code, r.stdout, r.stderr)
	}
	want := fmt.Sprintf("needs at least %d MiB", least>>20)
	r = run(t, "run", "--mem", fmt.Sprintf("%dM", least>>20-2), img)
	if r.code != exitNotStart || !strings.Contains(r.stderr, want) {
		t.Errorf("--mem %dM: exit %d, stderr %q, want %q", least>>20-2, r.code, r.stderr, want)
	}
}

// make run builds with a relative -o: it is relative to where vmm runs,
// not to the package's directory (where the go command runs).
func TestBuildRelativeOutput(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vmmBin, "build", "-o", "sub/rel.img", filepath.Join(wd, "../../apps/hello"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("relative -o: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "rel.img")); err != nil {
		t.Errorf("the image is not where -o said: %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.img")
	for _, c := range []struct{ pkg, want string }{
		{"../../boot", "not a main package"},
		{"./testdata/does-not-exist", "does-not-exist"},
		{t.TempDir(), "not inside a Go module"},
	} {
		r := run(t, "build", "-o", out, c.pkg)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("vmm build %s: exit %d, stderr %q; want an error with %q", c.pkg, r.code, r.stderr, c.want)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "run"}, {"help", "build"}, {"run", "-h"}} {
		r := run(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "Usage") {
			t.Errorf("vmm %v: exit %d, output %q", args, r.code, r.stdout+r.stderr)
		}
	}
}

// TestGoroutineOOM: 100,000 goroutines with grown stacks in 48 MiB. The
// runtime must report the exhaustion itself, as natively (status 2, "out
// of memory"); a kernel that loses a register or a return address on the
// way shows up as a signal death or a garbled traceback instead. Which
// allocation fails first, the heap's ("out of memory") or the runtime's
// own off-heap memory ("cannot allocate memory", as natively under
// ulimit -v), depends on how much memory the image itself takes: both are
// the runtime's report.
func TestGoroutineOOM(t *testing.T) {
	r := runGuest(t, "./testdata/goroutineoom", guestrun.Config{Mem: "48M", Env: []string{"GOTRACEBACK=none"}})
	out := r.stdout + r.stderr
	runtimeOOM := strings.Contains(out, "fatal error: runtime: out of memory") || strings.Contains(out, "fatal error: runtime: cannot allocate memory")
	if r.code != 2 || !runtimeOOM || strings.Contains(out, "amber: ") {
		t.Errorf("exit %d, want 2 with the runtime's out-of-memory report:\n%s", r.code, tailLines(out, 30))
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Ctrl-C in the middle of a copy (issue 8: it lost a 32 KiB read or
// printed a line twice): the guest ignores the SIGINT and every byte of
// its input comes out once.
func TestCtrlCLosesNothing(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/copyio")
	cmd := exec.Command(vmmBin, "run", "--timeout", "60s", img)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	out, errOut := &syncWriter{b: &stdout}, &syncWriter{b: &stderr}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := pattern(4 << 20)
	half := len(in) / 2
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; i < maxPolls && !cond(); i++ {
			time.Sleep(25 * time.Millisecond)
		}
		if !cond() {
			cmd.Process.Kill()
			t.Fatalf("never saw %s; stderr:\n%s", what, errOut.String())
		}
	}
	if _, err := stdin.Write(in[:half]); err != nil {
		t.Fatal(err)
	}
	waitFor("the guest copy", func() bool { return out.Len() > 0 })
	cmd.Process.Signal(syscall.SIGINT)
	waitFor("the guest's SIGINT", func() bool { return strings.Contains(errOut.String(), "got SIGINT") })
	if _, err := stdin.Write(in[half:]); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut.String())
	}
	if got := stdout.Bytes(); !bytes.Equal(got, in) {
		t.Errorf("%d bytes out of %d in, first difference at byte %d; stderr:\n%s", len(got), len(in), firstDiff(got, in), errOut.String())
	}
}

// pattern returns n bytes that differ from line to line, so a lost or
// repeated chunk shows.
func pattern(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d of the copy test\n", i)
	}
	return b.Bytes()[:n]
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// `vmm run spew.img > /dev/full` told the guest its writes succeeded and
// ran forever (issue 8). The guest sees the host's errors: ENOSPC, and
// EPIPE with SIGPIPE for a pipe without readers, as a native program.
func TestConsoleWriteErrors(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/spew")
	runTo := func(stdout *os.File, args ...string) result {
		t.Helper()
		cmd := exec.Command(vmmBin, append([]string{"run", "--timeout", "60s", img, "--"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return result{"", stderr.String(), cmd.ProcessState.ExitCode()}
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer full.Close()
	if r := runTo(full); r.code != 3 || !strings.Contains(r.stderr, "spew: write 0: write /dev/stdout: no space left on device") {
		t.Errorf("> /dev/full: exit %d, stderr:\n%s", r.code, r.stderr)
	}

	// A pipe whose reader is gone: the Go runtime in the guest dies of
	// SIGPIPE (128+13) as it would natively; with SIGPIPE ignored the
	// write reports EPIPE.
	closedPipe := func() *os.File {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pr.Close()
		t.Cleanup(func() { pw.Close() })
		return pw
	}
	if r := runTo(closedPipe()); r.code != 128+13 || strings.Contains(r.stderr, "spew: write") {
		t.Errorf("| (closed): exit %d, want 141 (SIGPIPE); stderr:\n%s", r.code, r.stderr)
	}
	if r := runTo(closedPipe(), "-ignore-sigpipe"); r.code != 3 || !strings.Contains(r.stderr, "spew: write 0: write /dev/stdout: broken pipe") {
		t.Errorf("| (closed), SIGPIPE ignored: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// --timeout, SIGTERM and Ctrl-C stop the VM while a console write waits
// for a reader that never reads (issue 8: they waited until the reader
// exited).
func TestStopWhileStdoutBlocks(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/spew")
	start := func(both bool, args ...string) (*exec.Cmd, *os.File, *syncWriter) {
		t.Helper()
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(vmmBin, append([]string{"run"}, append(args, img)...)...)
		var stderr bytes.Buffer
		errOut := &syncWriter{b: &stderr}
		cmd.Stdout, cmd.Stderr = pw, errOut
		if both {
			cmd.Stderr = pw // 2>&1: the crash report cannot be written either
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		t.Cleanup(func() { pr.Close() })
		// Wait until the pipe is full: the guest's write is blocked. Full
		// is short of 64 KiB: a line that does not fit in a page's tail
		// starts the next page, so each of the 16 holds up to a line less.
		for i := 0; i < 800; i++ {
			if n, _ := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ); n >= 63<<10 {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		return cmd, pr, errOut
	}
	cmd, _, errOut := start(false, "--timeout", "2s")
	if code := waitExit(t, cmd); code != vmm.ExitCrash || !strings.Contains(errOut.String(), "did not finish within 2s") {
		t.Errorf("--timeout with stdout blocked: exit %d, stderr:\n%s", code, errOut.String())
	}
	cmd, _, _ = start(true, "--timeout", "2s")
	if code := waitExit(t, cmd); code != vmm.ExitCrash {
		t.Errorf("--timeout with stdout and stderr blocked: exit %d", code)
	}
	cmd, _, errOut = start(false)
	cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cmd); code != vmm.ExitInterrupted || !strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("SIGTERM with stdout blocked: exit %d, stderr:\n%s", code, errOut.String())
	}
	// Ctrl-C interrupts the blocked write as it would natively: the guest
	// (no SIGINT handler) dies of the signal, and the VMM did not have to
	// stop it.
	cmd, _, errOut = start(false)
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, cmd); code != 128+2 || strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("Ctrl-C with stdout blocked: exit %d, stderr:\n%s", code, errOut.String())
	}
}

// The image file truncated while its VM runs (issue 8: the guest hung on
// the pages it had not touched yet, or the VMM died of SIGBUS): the VM
// runs on the VMM's snapshot of the file and finishes normally.
func TestImageTruncatedWhileRunning(t *testing.T) {
	needKVM(t)
	raw, err := os.ReadFile(image(t, "./testdata/late"))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "late.img")
	if err := os.WriteFile(img, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vmmBin, "run", "--timeout", "60s", img)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	out := &syncWriter{b: &stdout}
	cmd.Stdout, cmd.Stderr = out, &syncWriter{b: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxPolls && !strings.Contains(out.String(), "ready"); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if err := os.Truncate(img, 0); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	stdin.Close()
	if code := waitExit(t, cmd); code != 0 || !strings.Contains(out.String(), "done b1601f694b9d336c") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", code, out.String(), stderr.String())
	}
}

// A --mem beyond what a uint64 of bytes holds is a usage error.
func TestMemTooLarge(t *testing.T) {
	if r := run(t, "run", "--mem", "17179869186G", "nonexistent.img"); r.code != exitUsage || !strings.Contains(r.stderr, "too large") {
		t.Errorf("vmm run --mem 17179869186G: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestAccelTCG: vmm run --accel tcg keeps vmm run's contract where QEMU
// can give it (exit status, --timeout as 125 with a message), refuses the
// flags that need Amber's VMM, and an unusable accelerator is a usage
// error.
func TestAccelTCG(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("qemu-system-x86_64 is not installed (Debian/Ubuntu: apt-get install qemu-system-x86): %v", err)
	}
	expect(t, run(t, "run", "--accel", "tcg", image(t, "./testdata/exit3")), 3, "exiting with 3")
	r := run(t, "run", "--accel", "tcg", "--timeout", "2s", image(t, "./testdata/spin"))
	if r.code != vmm.ExitCrash || !strings.Contains(r.stderr, "did not finish within 2s") {
		t.Errorf("--timeout under tcg: exit %d, stderr %q", r.code, r.stderr)
	}
	hello := image(t, "../../apps/hello")
	for _, flag := range [][]string{{"--boot", "pvh"}, {"--syscall-trap", "ud"}, {"--boot-time"}} {
		args := append(append([]string{"run", "--accel", "tcg"}, flag...), hello)
		if r := run(t, args...); r.code != exitUsage || !strings.Contains(r.stderr, "not available with --accel tcg") {
			t.Errorf("vmm %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if r := run(t, "run", "--accel", "hvf", hello); r.code != exitUsage || !strings.Contains(r.stderr, "want kvm or tcg") {
		t.Errorf("--accel hvf: exit %d, stderr %q", r.code, r.stderr)
	}
}
