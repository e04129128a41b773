package guest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/vmm/api"
)

// The helpers of the network tests and benchmarks on Amber's own
// virtio-net device and user-mode network (KVM only): apps/httpd booted
// with vmm run --net user,hostfwd=..., or run natively as the baseline.

// httpdVM is apps/httpd running in a VM behind a host forward.
type httpdVM struct {
	base  string        // http://127.0.0.1:PORT, the forward
	api   *api.Client   // the VM's control API (exit counts)
	first time.Duration // from vmm run's start to the first answer
	cmd   *exec.Cmd
	out   *syncBuf
	done  chan error
	once  sync.Once
}

// stop ends the VM (SIGTERM) and waits for vmm to exit; later calls do
// nothing.
func (v *httpdVM) stop() {
	v.once.Do(func() {
		v.cmd.Process.Signal(syscall.SIGTERM)
		<-v.done
	})
}

// needNetHelper builds vmm-net next to vmm outside the nested stage
// (tools/nestkvm builds it there): vmm runs the user-mode network in it.
func needNetHelper(t testing.TB) {
	t.Helper()
	if prebuilt != "" {
		return
	}
	helper := filepath.Join(filepath.Dir(vmmBin), "vmm-net")
	if out, err := exec.Command("go", "build", "-o", helper, "../../tools/vmmnet").CombinedOutput(); err != nil {
		t.Fatalf("building vmm-net: %v\n%s", err, out)
	}
}

// startHTTPDVM boots apps/httpd with a forward from a free host port to
// the guest's port 80 and the control API, and waits for its first
// answer; options are kernel options for --cmdline. The VM is stopped
// when t ends.
func startHTTPDVM(t testing.TB, options ...string) *httpdVM {
	t.Helper()
	flags := []string{"--boot-time"}
	for _, o := range options {
		flags = append(flags, "--cmdline", o)
	}
	v, start := launchHTTPDVM(t, flags...)
	first, err := firstAnswer(v.base, start, v.done)
	if err != nil {
		t.Fatalf("apps/httpd through the forward: %v\nvmm output:\n%s", err, v.out.String())
	}
	v.first = first
	return v
}

// launchHTTPDVM starts vmm run of apps/httpd with a forward from a free
// host port to the guest's port 80, the control API and the extra vmm
// run flags, without waiting for it: the VM and when it was started. It
// is stopped when t ends, its output logged if t failed.
func launchHTTPDVM(t testing.TB, flags ...string) (*httpdVM, time.Time) {
	t.Helper()
	img := image(t, "../../apps/httpd")
	needNetHelper(t)
	port := freePort(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	v := &httpdVM{base: fmt.Sprintf("http://127.0.0.1:%d", port), api: api.NewClient(sock), out: &syncBuf{}, done: make(chan error, 1)}
	args := append([]string{"run", "--timeout", "1800s", "--api", sock,
		"--net", fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", port)}, flags...)
	v.cmd = exec.Command(vmmBin, append(args, img)...)
	v.cmd.Stdout, v.cmd.Stderr = v.out, v.out
	start := time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.done <- v.cmd.Wait() }()
	t.Cleanup(func() {
		v.stop()
		if t.Failed() {
			t.Logf("vmm output:\n%s", v.out.String())
		}
	})
	return v, start
}

// startHTTPDNative runs apps/httpd as a host process on a free loopback
// port and waits for its first answer: the baseline.
func startHTTPDNative(t testing.TB) (base string, first time.Duration) {
	t.Helper()
	bin := nativeBin(t, "../../apps/httpd")
	base = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "-addr", strings.TrimPrefix(base, "http://"))
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	first, err := firstAnswer(base, start, done)
	if err != nil {
		t.Fatalf("native httpd: %v\n%s", err, out.String())
	}
	return base, first
}

// firstAnswer polls base with GET / on fresh connections and returns
// how long after start the first correct answer came. Attempts follow
// each other as fast as they fail (a refused connection, or the forward
// closing it while the guest does not listen yet); one that hangs (its
// SYN went out before the guest's network was up and waits for a
// retransmission) gets company every 100 ms, at most 8 at a time, so
// the figure is late by at most that much and the guest is not flooded
// with dials while it boots. Nested (tools/nestkvm) an attempt may take
// seconds: there failed attempts are 100 ms apart, an attempt gets 30 s
// and company only every 2 s, two at a time, since each abandoned one
// still costs vmm-net and the guest a connection, and a stream of them
// on the nested Linux's one CPU kept a guest from ever answering. It
// gives up when exited delivers (the server died) or after five
// minutes, which only bounds a failing run.
func firstAnswer(base string, start time.Time, exited chan error) (time.Duration, error) {
	retry, timeout, company, most := time.Millisecond, 3*time.Second, 100*time.Millisecond, 8
	if prebuilt != "" {
		retry, timeout, company, most = 100*time.Millisecond, 30*time.Second, 2*time.Second, 2
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: timeout}
	type answer struct {
		at  time.Duration
		err error
	}
	answers := make(chan answer, 64)
	inflight := 0
	var newest time.Time
	attempt := func() {
		inflight++
		newest = time.Now()
		go func() {
			resp, err := hc.Get(base + "/")
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && !strings.HasPrefix(string(b), "hello from amber httpd: GET /") {
					err = fmt.Errorf("GET /: %q", b)
				}
			}
			answers <- answer{time.Since(start), err}
		}()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Minute)
	var last error
	attempt()
	for {
		select {
		case a := <-answers:
			inflight--
			if a.err == nil {
				return a.at, nil
			}
			last = a.err
			if inflight == 0 {
				time.Sleep(retry)
				attempt()
			}
		case <-tick.C:
			if inflight < most && time.Since(newest) >= company {
				attempt()
			}
		case err := <-exited:
			exited <- err
			return 0, fmt.Errorf("the server exited (%v) before answering", err)
		case <-deadline:
			return 0, fmt.Errorf("no answer within 5 minutes: %v", last)
		}
	}
}

// exits sums the VM's exits to the VMM so far, all kinds.
func (v *httpdVM) exits(t testing.TB) (int, map[string]int) {
	t.Helper()
	var m struct {
		Exits map[string]int `json:"exits"`
	}
	if err := v.api.Do("GET", "/metrics", nil, &m); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	n := 0
	for _, c := range m.Exits {
		n += c
	}
	return n, m.Exits
}

// exitDelta is after - before, by kind, for the log.
func exitDelta(before, after map[string]int) string {
	var kinds []string
	for k := range after {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for _, k := range kinds {
		if d := after[k] - before[k]; d != 0 {
			fmt.Fprintf(&b, " %s=%d", k, d)
		}
	}
	return strings.TrimSpace(b.String())
}

// loadResult is what a run of httpLoad measured.
type loadResult struct {
	requests int
	perSec   float64
	p50, p99 time.Duration
}

// httpLoad sends GET / from clients goroutines, each on its own
// keep-alive connection (opened and used once before the clock starts),
// perClient requests each, and checks every answer. A client starts no
// request after budget (but always makes one), so that a slow nested run
// stays within its time. Latency is per request, from the call to the
// body's end.
func httpLoad(t testing.TB, base string, clients, perClient int, budget time.Duration) loadResult {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	get := func() error {
		resp, err := hc.Get(base + "/")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(b) != "hello from amber httpd: GET /\n" {
			return fmt.Errorf("GET /: %s %q", resp.Status, b)
		}
		return nil
	}
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var warm, wg sync.WaitGroup
	begin := make(chan struct{})
	var start time.Time // written before begin is closed
	warm.Add(clients)
	wg.Add(clients)
	for c := 0; c < clients; c++ {
		go func() {
			defer wg.Done()
			errs[c] = get()
			warm.Done()
			<-begin
			if errs[c] != nil {
				return
			}
			lat[c] = make([]time.Duration, 0, perClient)
			for i := 0; i < perClient && (i == 0 || time.Since(start) < budget); i++ {
				t0 := time.Now()
				if err := get(); err != nil {
					errs[c] = err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	warm.Wait()
	start = time.Now()
	close(begin)
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%d clients: %v", clients, err)
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return loadResult{
		requests: len(all),
		perSec:   float64(len(all)) / elapsed.Seconds(),
		p50:      all[len(all)/2],
		p99:      all[min(len(all)-1, len(all)*99/100)],
	}
}

// patternReader yields n bytes of a repeating pattern without holding
// them.
type patternReader struct{ n int64 }

var bulkPattern = []byte(strings.Repeat("amber bulk data\n", 4096))

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), r.n)], bulkPattern)
	r.n -= int64(n)
	return n, nil
}

// bulk moves n bytes over one TCP connection through httpd and returns
// MB/s (10^6 bytes): up is host -> server (POST /sink, which counts the
// body), otherwise server -> host (GET /bytes?n=N).
func bulk(t testing.TB, base string, n int64, up bool) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Minute}
	start := time.Now()
	var got int64
	if up {
		resp, err := hc.Post(base+"/sink", "application/octet-stream", io.NopCloser(&patternReader{n}))
		if err != nil {
			t.Fatalf("POST /sink: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	} else {
		resp, err := hc.Get(fmt.Sprintf("%s/bytes?n=%d", base, n))
		if err != nil {
			t.Fatalf("GET /bytes: %v", err)
		}
		got, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET /bytes: %v after %d bytes", err, got)
		}
	}
	if got != n {
		t.Fatalf("bulk (up %v): %d bytes arrived, want %d", up, got, n)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

// netUpRE is vmm run --boot-time's line for the user-mode network's start.
var netUpRE = regexp.MustCompile(`vmm: network up (\S+) after vmm's start`)

// netBenchSizes are the sizes of the network benchmarks' phases:
// requests per client to the guest with one client (spread over 32 with
// 32; ten times that natively), MiB each way in bulk, and the time after
// which a load phase starts no more requests. On the host
// NET_BENCH_REQUESTS, NET_BENCH_MIB and NET_BENCH_PHASE (a duration) set
// them. Nested (tools/nestkvm, which passes no environment of its own)
// they are smaller: a request costs ~100 times more there and the nested
// Linux's one CPU runs the vCPU, the devices, vmm-net and the load
// generator, so a whole run must fit in about 15 minutes.
func netBenchSizes() (requests, mib int, budget time.Duration) {
	requests, mib, budget = 400, 16, time.Minute
	if os.Getenv("AMBER_TEST_PREBUILT") != "" {
		requests, mib, budget = 200, 2, 20*time.Second
	}
	if s := os.Getenv("NET_BENCH_REQUESTS"); s != "" {
		requests, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("NET_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("NET_BENCH_PHASE"); s != "" {
		budget, _ = time.ParseDuration(s)
	}
	return max(requests, 1), max(mib, 1), budget
}

// idlePollVariant is a guest configuration the network benchmarks
// compare: its metrics' prefix and its kernel options.
type idlePollVariant struct {
	name    string
	options []string
}

// BenchmarkNetKVM: apps/httpd in a VM on Amber's virtio-net device and
// user-mode network (vmm run --net user,hostfwd=...), under KVM, against
// the same program as a native process on the host's loopback, in the
// same run. Two VMs: off- with the kernel's idle polling off
// (amber.idlepoll=0), on- with it at 50 µs (kernel/idlepoll.go). A Go
// load generator in the test process sends GET / with 1 and 32
// keep-alive clients (requests/s, p50 and p99 latency); bulk TCP moves
// MiB each way over one connection (POST /sink, GET /bytes); sizes in
// netBenchSizes. first-answer is from the start of vmm run (or of the
// native process) to the first answered request; vmm-net-up is when
// vmm-net's forwards listened (it starts while the guest boots).
// exits/request are the VM's exits to the VMM over the timed requests,
// from the control API's metrics. Run nested: go run ./tools/nestkvm
// -bench NetKVM.
func BenchmarkNetKVM(b *testing.B) {
	needKVM(b)
	n, mib, budget := netBenchSizes()
	perClient := map[int][2]int{1: {n, 10 * n}, 32: {max(n/32, 1), max(10*n/32, 1)}}
	variants := []idlePollVariant{{"off", []string{"amber.idlepoll=0"}}, {"on", []string{"amber.idlepoll=50us"}}}
	// The figures come at the end; these lines show a slow nested run
	// going.
	progress := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "netbench: "+format+"\n", args...) }
	progress("%d requests, %d MiB, %v a phase", n, mib, budget)
	for i := 0; i < b.N; i++ {
		vms := make([]*httpdVM, len(variants))
		for j, v := range variants {
			vm := startHTTPDVM(b, v.options...)
			vms[j] = vm
			progress("first answer: guest (idle poll %s) %v", v.name, vm.first)
			b.ReportMetric(float64(vm.first.Microseconds())/1000, v.name+"-first-answer-ms")
			if m := netUpRE.FindStringSubmatch(vm.out.String()); m != nil {
				if d, err := time.ParseDuration(m[1]); err == nil {
					b.ReportMetric(float64(d.Microseconds())/1000, v.name+"-vmm-net-up-ms")
				}
			}
		}
		nbase, nfirst := startHTTPDNative(b)
		progress("first answer: native %v", nfirst)
		b.ReportMetric(float64(nfirst.Microseconds())/1000, "native-first-answer-ms")
		for j, v := range variants {
			b.ReportMetric(float64(vms[j].first)/float64(nfirst), v.name+"-first-answer-ratio")
		}
		for _, c := range []int{1, 32} {
			p := fmt.Sprintf("c%d-", c)
			gs := make([]loadResult, len(variants))
			for j, v := range variants {
				e0, m0 := vms[j].exits(b)
				gs[j] = httpLoad(b, vms[j].base, c, perClient[c][0], budget)
				e1, m1 := vms[j].exits(b)
				g := gs[j]
				b.ReportMetric(g.perSec, v.name+"-"+p+"req/s")
				b.ReportMetric(float64(g.p50.Microseconds()), v.name+"-"+p+"p50-us")
				b.ReportMetric(float64(g.p99.Microseconds()), v.name+"-"+p+"p99-us")
				b.ReportMetric(float64(e1-e0)/float64(g.requests), v.name+"-"+p+"exits/request")
				b.Logf("%d clients, idle poll %s: %d guest requests, exits %s", c, v.name, g.requests, exitDelta(m0, m1))
				progress("%d clients, idle poll %s: %d requests, %.1f req/s, p50 %v, p99 %v, %.2f exits/request",
					c, v.name, g.requests, g.perSec, g.p50, g.p99, float64(e1-e0)/float64(g.requests))
			}
			nr := httpLoad(b, nbase, c, perClient[c][1], budget)
			b.ReportMetric(nr.perSec, "native-"+p+"req/s")
			b.ReportMetric(float64(nr.p50.Microseconds()), "native-"+p+"p50-us")
			b.ReportMetric(float64(nr.p99.Microseconds()), "native-"+p+"p99-us")
			for j, v := range variants {
				b.ReportMetric(gs[j].perSec/nr.perSec, v.name+"-"+p+"req/s-ratio")
				b.ReportMetric(float64(gs[j].p99)/float64(nr.p99), v.name+"-"+p+"p99-ratio")
			}
			progress("%d clients, native: %d requests, %.1f req/s, p50 %v, p99 %v", c, nr.requests, nr.perSec, nr.p50, nr.p99)
		}
		size := int64(mib) << 20
		for _, up := range []bool{true, false} {
			dir := "down"
			if up {
				dir = "up"
			}
			gs := make([]float64, len(variants))
			for j, v := range variants {
				e0, m0 := vms[j].exits(b)
				gs[j] = bulk(b, vms[j].base, size, up)
				e1, m1 := vms[j].exits(b)
				b.ReportMetric(gs[j], v.name+"-"+dir+"-MB/s")
				b.Logf("bulk %s %d MiB, idle poll %s: exits %d (%s)", dir, mib, v.name, e1-e0, exitDelta(m0, m1))
				progress("bulk %s, idle poll %s: %.2f MB/s, %d exits", dir, v.name, gs[j], e1-e0)
			}
			nr := bulk(b, nbase, size, up)
			b.ReportMetric(nr, "native-"+dir+"-MB/s")
			for j, v := range variants {
				b.ReportMetric(gs[j]/nr, v.name+"-"+dir+"-ratio")
			}
			progress("bulk %s, native: %.2f MB/s", dir, nr)
		}
	}
}

// BenchmarkNetIdlePollKVM chooses the kernel's idle polling default
// (amber.idlepoll, kernel/idlepoll.go): apps/httpd booted once per
// value, each answering one keep-alive client (the case where the guest
// idles between every two requests) as in BenchmarkNetKVM, one VM at a
// time; requests/s, p50, p99 and exits/request per value, and the
// native figure of the same run. The metrics' prefix is the value
// (p0 is off). Run nested: go run ./tools/nestkvm -bench NetIdlePollKVM.
func BenchmarkNetIdlePollKVM(b *testing.B) {
	needKVM(b)
	n, _, budget := netBenchSizes()
	values := []string{"0", "50us", "200us", "1ms"}
	progress := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "netbench: "+format+"\n", args...) }
	for i := 0; i < b.N; i++ {
		for _, v := range values {
			vm := startHTTPDVM(b, "amber.idlepoll="+v)
			e0, m0 := vm.exits(b)
			g := httpLoad(b, vm.base, 1, n, budget)
			e1, m1 := vm.exits(b)
			vm.stop()
			p := "p" + v + "-"
			b.ReportMetric(g.perSec, p+"req/s")
			b.ReportMetric(float64(g.p50.Microseconds()), p+"p50-us")
			b.ReportMetric(float64(g.p99.Microseconds()), p+"p99-us")
			b.ReportMetric(float64(e1-e0)/float64(g.requests), p+"exits/request")
			b.Logf("idle poll %s: %d requests, exits %s", v, g.requests, exitDelta(m0, m1))
			progress("idle poll %s: %d requests, %.1f req/s, p50 %v, p99 %v, %.2f exits/request",
				v, g.requests, g.perSec, g.p50, g.p99, float64(e1-e0)/float64(g.requests))
		}
		nbase, _ := startHTTPDNative(b)
		nr := httpLoad(b, nbase, 1, 10*n, budget)
		b.ReportMetric(nr.perSec, "native-req/s")
		b.ReportMetric(float64(nr.p50.Microseconds()), "native-p50-us")
		b.ReportMetric(float64(nr.p99.Microseconds()), "native-p99-us")
		progress("native: %d requests, %.1f req/s, p50 %v, p99 %v", nr.requests, nr.perSec, nr.p50, nr.p99)
	}
}
