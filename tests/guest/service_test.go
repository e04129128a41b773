package guest

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/amberos/amber/tools/guestrun"
)

// TestServices boots testdata/services, which drives the kernel's service
// hand-off from both sides: data both ways through the netpoller, 1 MiB
// through rings of a page, synchronous calls and their errors, the close
// of either side, a closed queue, bad handles and poll readiness.
func TestServices(t *testing.T) {
	r := runGuest(t, "./testdata/services", guestrun.Config{})
	expect(t, r, 0)
	if got := len(okLineRE.FindAllString(r.stdout, -1)); got != 8 {
		t.Errorf("%d checks passed, want 8:\n%s", got, r.stdout)
	}
}

// TestHandoffModes runs every mode of testdata/handoff once in the guest,
// each of which checks the data it gets back, with GOMAXPROCS 1 (the
// service goroutine runs only when the caller's goroutine parks) and 2.
func TestHandoffModes(t *testing.T) {
	for _, procs := range []string{"1", "2"} {
		r := runGuest(t, "./testdata/handoff", guestrun.Config{
			Args: []string{"-modes", "chan,pipe,service,call", "-rounds", "1", "-n", "50"},
			Env:  []string{"GOMAXPROCS=" + procs},
		})
		expect(t, r, 0, "chan_rt_ns=", "pipe_rt_ns=", "service_rt_ns=", "call_rt_ns=")
	}
}

var okLineRE = regexp.MustCompile(`(?m)^ok `)

var handoffRE = regexp.MustCompile(`(\w+)_rt_ns=([0-9.]+)`)

func handoffFigures(out string) map[string]float64 {
	m := map[string]float64{}
	for _, s := range handoffRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(s[2], 64)
		m[s[1]] = v
	}
	return m
}

// BenchmarkHandoff: the round trip from a program goroutine through the
// kernel to a service goroutine and back (testdata/handoff's service mode,
// GOMAXPROCS=1), against the same program's pipe ping-pong as a native
// Linux process (the closest native equivalent: two goroutines handing a
// byte through the kernel and the netpoller). Goal: <= 5 µs in the guest.
// Also reported: the channel floor, the guest's own pipe path, and the
// blocking call (whose service goroutine runs only once the runtime hands
// the caller's P away) with GOMAXPROCS 1 and 2. Medians of 11 rounds of
// 2,000 round trips (200 for calls). Under QEMU's emulator the guest
// figures measure the emulator.
func BenchmarkHandoff(b *testing.B) {
	needGuest(b)
	native := filepath.Join(b.TempDir(), "handoff")
	if out, err := exec.Command("go", "build", "-o", native, "./testdata/handoff").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	for i := 0; i < b.N; i++ {
		g := runGuest(b, "./testdata/handoff", guestrun.Config{Args: []string{"-modes", "chan,pipe,service"}})
		c1 := runGuest(b, "./testdata/handoff", guestrun.Config{Args: []string{"-modes", "call", "-n", "200"}})
		c2 := runGuest(b, "./testdata/handoff", guestrun.Config{Args: []string{"-modes", "call", "-n", "200"}, Env: []string{"GOMAXPROCS=2"}})
		out, err := exec.Command(native, "-modes", "chan,pipe").CombinedOutput()
		if g.code != 0 || c1.code != 0 || c2.code != 0 || err != nil {
			b.Fatalf("guest %d/%d/%d %s%s%s; native %v %s", g.code, c1.code, c2.code, g.stdout, c1.stdout, c2.stdout, err, out)
		}
		gf, nf := handoffFigures(g.stdout), handoffFigures(string(out))
		b.ReportMetric(gf["service"], "guest-service-ns")
		b.ReportMetric(gf["pipe"], "guest-pipe-ns")
		b.ReportMetric(gf["chan"], "guest-chan-ns")
		b.ReportMetric(handoffFigures(c1.stdout)["call"], "guest-call-p1-ns")
		b.ReportMetric(handoffFigures(c2.stdout)["call"], "guest-call-p2-ns")
		b.ReportMetric(nf["pipe"], "native-pipe-ns")
		b.ReportMetric(nf["chan"], "native-chan-ns")
		b.ReportMetric(nf["pipe"]/gf["service"], "speedup")
	}
}
