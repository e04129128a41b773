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
// answer. The VM is stopped when t ends.
func startHTTPDVM(t testing.TB) *httpdVM {
	t.Helper()
	img := image(t, "../../apps/httpd")
	needNetHelper(t)
	port := freePort(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	v := &httpdVM{base: fmt.Sprintf("http://127.0.0.1:%d", port), api: api.NewClient(sock), out: &syncBuf{}, done: make(chan error, 1)}
	v.cmd = exec.Command(vmmBin, "run", "--boot-time", "--timeout", "1800s", "--api", sock,
		"--net", fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", port), img)
	v.cmd.Stdout, v.cmd.Stderr = v.out, v.out
	start := time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.done <- v.cmd.Wait() }()
	t.Cleanup(func() {
		v.cmd.Process.Signal(syscall.SIGTERM)
		<-v.done
		if t.Failed() {
			t.Logf("vmm output:\n%s", v.out.String())
		}
	})
	first, err := firstAnswer(v.base, start, v.done)
	if err != nil {
		t.Fatalf("apps/httpd through the forward: %v\nvmm output:\n%s", err, v.out.String())
	}
	v.first = first
	return v
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
// with dials while it boots. It gives up when exited delivers (the
// server died) or after five minutes, which only bounds a failing run.
func firstAnswer(base string, start time.Time, exited chan error) (time.Duration, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 3 * time.Second}
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
				time.Sleep(time.Millisecond)
				attempt()
			}
		case <-tick.C:
			if inflight < 8 && time.Since(newest) >= 100*time.Millisecond {
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
// perClient requests each, and checks every answer. Latency is per
// request, from the call to the body's end.
func httpLoad(t testing.TB, base string, clients, perClient int) loadResult {
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
			for i := 0; i < perClient; i++ {
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
	start := time.Now()
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

// BenchmarkNetKVM: apps/httpd in a VM on Amber's virtio-net device and
// user-mode network (vmm run --net user,hostfwd=...), under KVM, against
// the same program as a native process on the host's loopback, in the
// same run. A Go load generator in the test process sends GET / with 1
// and 32 keep-alive clients (requests/s, p50 and p99 latency;
// NET_BENCH_REQUESTS, default 400, to the guest with 1 client and spread
// over 32, ten times that natively). Bulk TCP moves NET_BENCH_MIB MiB
// (default 16: nested KVM on a shared machine is slow) each way over one
// connection (POST /sink, GET /bytes). first-answer is from the start of
// vmm run (or of the native process) to the first answered request,
// polled every 2 ms; vmm-net-up is when vmm-net's forwards listened (it
// starts while the guest boots). exits/request are the VM's exits to the
// VMM over the timed requests, from the control API's metrics. Run
// nested: go run ./tools/nestkvm -bench NetKVM.
func BenchmarkNetKVM(b *testing.B) {
	needKVM(b)
	mib := 16
	if s := os.Getenv("NET_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	// Requests per client, guest and native: the native server is some
	// ten times faster, and each side should run for seconds.
	n := 400
	if s := os.Getenv("NET_BENCH_REQUESTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	perClient := map[int][2]int{1: {n, 10 * n}, 32: {max(n/32, 1), max(10*n/32, 1)}}
	// The figures come at the end; these lines show a slow nested run
	// going.
	progress := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "netbench: "+format+"\n", args...) }
	for i := 0; i < b.N; i++ {
		vm := startHTTPDVM(b)
		nbase, nfirst := startHTTPDNative(b)
		progress("first answer: guest %v, native %v", vm.first, nfirst)
		b.ReportMetric(float64(vm.first.Microseconds())/1000, "guest-first-answer-ms")
		b.ReportMetric(float64(nfirst.Microseconds())/1000, "native-first-answer-ms")
		b.ReportMetric(float64(vm.first)/float64(nfirst), "first-answer-ratio")
		if m := netUpRE.FindStringSubmatch(vm.out.String()); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				b.ReportMetric(float64(d.Microseconds())/1000, "vmm-net-up-ms")
			}
		}
		for _, c := range []int{1, 32} {
			e0, m0 := vm.exits(b)
			g := httpLoad(b, vm.base, c, perClient[c][0])
			e1, m1 := vm.exits(b)
			n := httpLoad(b, nbase, c, perClient[c][1])
			p := fmt.Sprintf("c%d-", c)
			b.ReportMetric(g.perSec, "guest-"+p+"req/s")
			b.ReportMetric(n.perSec, "native-"+p+"req/s")
			b.ReportMetric(g.perSec/n.perSec, p+"req/s-ratio")
			b.ReportMetric(float64(g.p50.Microseconds()), "guest-"+p+"p50-us")
			b.ReportMetric(float64(g.p99.Microseconds()), "guest-"+p+"p99-us")
			b.ReportMetric(float64(n.p50.Microseconds()), "native-"+p+"p50-us")
			b.ReportMetric(float64(n.p99.Microseconds()), "native-"+p+"p99-us")
			b.ReportMetric(float64(g.p99)/float64(n.p99), p+"p99-ratio")
			b.ReportMetric(float64(e1-e0)/float64(g.requests), p+"exits/request")
			b.Logf("%d clients: %d guest requests, exits %s", c, g.requests, exitDelta(m0, m1))
			progress("%d clients: guest %.0f req/s, native %.0f req/s", c, g.perSec, n.perSec)
		}
		size := int64(mib) << 20
		for _, up := range []bool{true, false} {
			dir := "down"
			if up {
				dir = "up"
			}
			e0, m0 := vm.exits(b)
			g := bulk(b, vm.base, size, up)
			e1, m1 := vm.exits(b)
			n := bulk(b, nbase, size, up)
			b.ReportMetric(g, "guest-"+dir+"-MB/s")
			b.ReportMetric(n, "native-"+dir+"-MB/s")
			b.ReportMetric(g/n, dir+"-ratio")
			b.Logf("bulk %s %d MiB: exits %d (%s)", dir, mib, e1-e0, exitDelta(m0, m1))
			progress("bulk %s: guest %.1f MB/s, native %.1f MB/s", dir, g, n)
		}
	}
}
