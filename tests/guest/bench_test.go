package guest

import (
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

	"github.com/amberos/amber/vmm"
)

// Benchmarks compare against a baseline measured in the same run (these
// machines are shared and noisy) and report medians. Run with
// -benchtime 1x: each benchmark does its own repetitions.

const benchRuns = 21

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func timeCmd(b *testing.B, name string, args ...string) time.Duration {
	t0 := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return time.Since(t0)
}

var (
	phasesRE    = regexp.MustCompile(`vmm: phases: to-run (\S+), open-image (\S+), create-vm (\S+), run (\S+), since-start (\S+), started-unix-ns (\d+)`)
	breakdownRE = regexp.MustCompile(`vmm: memory now, besides the guest's RAM: (.*)`)
	memoryRE    = regexp.MustCompile(`vmm: memory: peak RSS (\d+) KiB, guest RAM resident (\d+) KiB, the VMM's own (\d+) KiB`)
)

// BenchmarkHelloWall: `vmm run hello.img` from exec to exit, against the
// same program as a native Linux process. Goal: <= 3x native. The
// --boot-time runs are made with and without --prefault (interleaved;
// the phases reported are those with it):
// prefault-wall-ratio is the ratio of their medians (below 1: faster). The run is
// broken into phases with vmm run --boot-time's figures: exec and the
// process's start (runtime, package inits) up to vmm's own code, flag
// parsing, opening the image, creating the VM, running the guest, and
// what is left: the VM's teardown and the process's exit. It also
// reports the VMM's resident memory beyond the guest's own pages (goal:
// <= 5 MiB). There is no native baseline for it: a child's ru_maxrss
// includes the RSS of the parent it was vfork'ed from (Linux carries the
// shared mm's high-water mark over exec), here the test binary's.
func BenchmarkHelloWall(b *testing.B) {
	needKVM(b)
	img := image(b, "../../apps/hello")
	native := nativeBin(b, "../../apps/hello")
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for i := 0; i < b.N; i++ {
		var guest, host, plain, nopre []time.Duration
		var exec0, toRun, open, create, run, rest []time.Duration
		var own, peak []float64
		var nopreCreate, nopreRun []time.Duration // --prefault=false
		var nopreOwn []float64
		for r := 0; r < benchRuns; r++ { // interleaved, so drift hits all
			plain = append(plain, timeCmd(b, vmmBin, "run", img))
			t1 := time.Now()
			nout, err := exec.Command(vmmBin, "run", "--boot-time", "--prefault=false", img).CombinedOutput()
			nopre = append(nopre, time.Since(t1))
			nm, nmm := phasesRE.FindSubmatch(nout), memoryRE.FindSubmatch(nout)
			if err != nil || nm == nil || nmm == nil {
				b.Fatalf("vmm run --boot-time --prefault=false: %v\n%s", err, nout)
			}
			nd := func(k int) time.Duration { v, _ := time.ParseDuration(string(nm[k])); return v }
			nopreCreate, nopreRun = append(nopreCreate, nd(3)), append(nopreRun, nd(4))
			v, _ := strconv.ParseFloat(string(nmm[3]), 64)
			nopreOwn = append(nopreOwn, v/1024)
			t0 := time.Now()
			cmd := exec.Command(vmmBin, "run", "--boot-time", "--prefault", img)
			out, err := cmd.CombinedOutput()
			wall := time.Since(t0)
			m, mm := phasesRE.FindSubmatch(out), memoryRE.FindSubmatch(out)
			if err != nil || m == nil || mm == nil {
				b.Fatalf("vmm run --boot-time: %v\n%s", err, out)
			}
			if r == 0 {
				b.Logf("%s", regexp.MustCompile(`vmm: image: .*`).Find(out))
			}
			d := func(k int) time.Duration { v, _ := time.ParseDuration(string(m[k])); return v }
			startNs, _ := strconv.ParseInt(string(m[6]), 10, 64)
			began := time.Unix(0, startNs).Sub(t0)
			guest = append(guest, wall)
			exec0 = append(exec0, began)
			toRun, open, create, run = append(toRun, d(1)), append(open, d(2)), append(create, d(3)), append(run, d(4))
			rest = append(rest, wall-began-d(5))
			kib := func(k int) float64 { v, _ := strconv.ParseFloat(string(mm[k]), 64); return v / 1024 }
			peak, own = append(peak, kib(1)), append(own, kib(3))
			if r == benchRuns/2 {
				if m := breakdownRE.FindSubmatch(out); m != nil {
					b.Logf("one run's VMM memory (peak %.1f MiB, own %.1f MiB), at its end: %s", kib(1), kib(3), m[1])
				}
				// Once, what the Go heap's transparent huge pages would
				// cost on a host whose THP mode is "always": vmm is
				// linked with disablethp=1 (the Makefile's VMM_LDFLAGS);
				// GODEBUG turns it back off.
				cmd := exec.Command(vmmBin, "run", "--boot-time", img)
				cmd.Env = append(os.Environ(), "GODEBUG=disablethp=0")
				out, err := cmd.CombinedOutput()
				m, mm := breakdownRE.FindSubmatch(out), memoryRE.FindSubmatch(out)
				if err != nil || m == nil || mm == nil {
					b.Fatalf("GODEBUG=disablethp=0 vmm run --boot-time: %v\n%s", err, out)
				}
				b.Logf("the same with GODEBUG=disablethp=0 (peak %s KiB, own %s KiB): %s", mm[1], mm[3], m[1])
			}
			host = append(host, timeCmd(b, native))
		}
		p, g, h := median(plain), median(guest), median(host)
		b.ReportMetric(ms(p), "vmm-ms")
		b.ReportMetric(ms(h), "native-ms")
		b.ReportMetric(float64(p)/float64(h), "ratio")
		// Both --boot-time runs, with and without populating the boot
		// working set.
		b.ReportMetric(ms(median(nopre)), "vmm-boot-time-noprefault-ms")
		b.ReportMetric(float64(g)/float64(median(nopre)), "prefault-wall-ratio")
		b.ReportMetric(ms(median(nopreCreate)), "noprefault-create-vm-ms")
		b.ReportMetric(ms(median(nopreRun)), "noprefault-run-ms")
		b.ReportMetric(medianF(nopreOwn), "noprefault-vmm-own-MiB")
		b.ReportMetric(ms(g), "vmm-boot-time-ms")
		b.ReportMetric(ms(median(exec0)), "exec-to-main-ms")
		b.ReportMetric(ms(median(toRun)), "flags-ms")
		b.ReportMetric(ms(median(open)), "open-image-ms")
		b.ReportMetric(ms(median(create)), "create-vm-ms")
		b.ReportMetric(ms(median(run)), "run-ms")
		b.ReportMetric(ms(median(rest)), "teardown-exit-ms")
		b.ReportMetric(medianF(own), "vmm-own-MiB")
		b.ReportMetric(medianF(peak), "vmm-peak-MiB")
	}
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkLeastMemory: the least --mem hello boots with (the image's
// MinMemory, which vmm run enforces), booted at exactly that. Goal:
// <= 8 MiB. Any accelerator. (No native baseline: see HelloWall on
// ru_maxrss.)
func BenchmarkLeastMemory(b *testing.B) {
	needGuest(b)
	path := image(b, "../../apps/hello")
	img, err := vmm.OpenImage(path)
	if err != nil {
		b.Fatal(err)
	}
	least := img.MinMemory()
	img.Close()
	for i := 0; i < b.N; i++ {
		r := run(b, "run", "--mem", strconv.FormatUint(least>>20, 10)+"M", path)
		if r.code != 0 || !strings.Contains(r.stdout, "Hello from Amber!") {
			b.Fatalf("--mem %d MiB: exit %d, %s %s", least>>20, r.code, r.stdout, r.stderr)
		}
		b.ReportMetric(float64(least>>20), "least-mem-MiB")
	}
}

// BenchmarkBootToMain: from the vCPU's first instruction to the guest's
// main() (the guest reports its TSC through kernel.Mark). Goal: <= 0.5 ms.
// The whole in-process VM lifetime (create, load, run, exit) is reported
// too, and both again without populating the boot working set first
// (Config.Prefault), interleaved.
func BenchmarkBootToMain(b *testing.B) {
	needKVM(b)
	img, err := vmm.OpenImage(image(b, "./testdata/bootmark"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		var toMain, whole, toMainNo, wholeNo []time.Duration
		for r := 0; r < benchRuns; r++ {
			for _, no := range []bool{false, true} {
				t0 := time.Now()
				vm, err := vmm.New(vmm.Config{Image: img, Prefault: !no})
				if err != nil {
					b.Fatal(err)
				}
				status, err := vm.Run()
				d := time.Since(t0)
				if err != nil || status != 0 || len(vm.Marks()) != 1 {
					b.Fatalf("status %d, err %v, marks %v", status, err, vm.Marks())
				}
				if no {
					toMainNo, wholeNo = append(toMainNo, vm.Marks()[0].SinceBoot), append(wholeNo, d)
				} else {
					toMain, whole = append(toMain, vm.Marks()[0].SinceBoot), append(whole, d)
				}
				vm.Close()
			}
		}
		ms := func(d []time.Duration) float64 { return float64(median(d).Microseconds()) / 1000 }
		b.ReportMetric(ms(toMain), "to-main-ms")
		b.ReportMetric(ms(whole), "vm-lifetime-ms")
		b.ReportMetric(ms(toMainNo), "to-main-noprefault-ms")
		b.ReportMetric(ms(wholeNo), "vm-lifetime-noprefault-ms")
	}
}

var getpidRE = regexp.MustCompile(`getpid_ns=([0-9.]+) getuid_ns=([0-9.]+)`)

// getpidBoots is how many times BenchmarkGetpid boots the guest (each
// boot times 11 batches of each call and prints their medians).
const getpidBoots = 5

// BenchmarkGetpid: syscall.RawSyscall(SYS_GETPID) in the guest (a direct
// call into the kernel, answered on the entry's leaf path) against the
// same call as a Linux syscall on the host. Goal: <= 5 ns in the guest.
// It also reports getuid, timed interleaved in the same guest: as
// trivial a handler, but through the full entry (register frame on the
// kernel stack), which is what getpid cost before the leaf path; medians
// over getpidBoots boots.
func BenchmarkGetpid(b *testing.B) {
	needKVM(b)
	img := image(b, "./testdata/getpid")
	for i := 0; i < b.N; i++ {
		var pid, uid, host []float64
		for boot := 0; boot < getpidBoots; boot++ {
			r := run(b, "run", img, "--", "1000000")
			m := getpidRE.FindStringSubmatch(r.stdout)
			if r.code != 0 || m == nil {
				b.Fatalf("guest: exit %d, %s %s", r.code, r.stdout, r.stderr)
			}
			p, _ := strconv.ParseFloat(m[1], 64)
			u, _ := strconv.ParseFloat(m[2], 64)
			pid, uid = append(pid, p), append(uid, u)
			var per []float64
			const n = 200_000
			for batch := 0; batch < 11; batch++ {
				t0 := time.Now()
				for j := 0; j < n; j++ {
					syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
				}
				per = append(per, float64(time.Since(t0).Nanoseconds())/n)
			}
			host = append(host, medianF(per))
		}
		guest, full, h := medianF(pid), medianF(uid), medianF(host)
		b.ReportMetric(guest, "guest-ns/call")
		b.ReportMetric(full, "full-path-ns/call")
		b.ReportMetric(h, "host-ns/call")
		b.ReportMetric(h/guest, "speedup")
		b.ReportMetric(full/guest, "leaf-gain")
	}
}

var (
	roundtripRE = regexp.MustCompile(`roundtrip_ns=([0-9.]+)`)
	computeRE   = regexp.MustCompile(`compute_ms=([0-9.]+)`)
)

// guestFigure boots img with args and extracts one number from its output.
func guestFigure(b *testing.B, re *regexp.Regexp, args ...string) float64 {
	b.Helper()
	r := run(b, args...)
	m := re.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		b.Fatalf("vmm %v: exit %d, %s %s", args, r.code, r.stdout, r.stderr)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// nativeFigure runs the same program as a Linux process.
func nativeFigure(b *testing.B, re *regexp.Regexp, pkg string, env ...string) float64 {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "prog")
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	m := re.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		b.Fatalf("native %s: %v %s", pkg, err, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// BenchmarkGoroutineSwitch: two goroutines ping-ponging on channels, in
// the guest and as a native process limited to one CPU (the guest has one).
func BenchmarkGoroutineSwitch(b *testing.B) {
	needKVM(b)
	img := image(b, "./testdata/pingpong")
	for i := 0; i < b.N; i++ {
		guest := guestFigure(b, roundtripRE, "run", img)
		native := nativeFigure(b, roundtripRE, "./testdata/pingpong", "GOMAXPROCS=1")
		b.ReportMetric(guest, "guest-ns/roundtrip")
		b.ReportMetric(native, "native-ns/roundtrip")
		b.ReportMetric(guest/native, "ratio")
	}
}

// BenchmarkTimerTick: a compute loop with the 1 kHz preemption tick and
// without it (amber.tick=off).
func BenchmarkTimerTick(b *testing.B) {
	needKVM(b)
	img := image(b, "./testdata/compute")
	for i := 0; i < b.N; i++ {
		ticking := guestFigure(b, computeRE, "run", img)
		quiet := guestFigure(b, computeRE, "run", "--cmdline", "amber.tick=off", img)
		native := nativeFigure(b, computeRE, "./testdata/compute")
		b.ReportMetric(ticking, "tick-ms")
		b.ReportMetric(quiet, "notick-ms")
		b.ReportMetric(native, "native-ms")
		b.ReportMetric(ticking/quiet, "tick-overhead-ratio")
	}
}
