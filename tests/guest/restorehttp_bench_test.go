package guest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// probe is what firstResponse saw.
type probe struct {
	body      string
	at        time.Time // the answer's body read
	started   time.Time // the answering attempt's start
	connected time.Time // the first TCP connection accepted (zero if none)
	refused   int       // attempts refused by the host (nothing listening yet)
	failed    int       // attempts that connected but got no answer
}

// describe is p's times from t0 and its attempts.
func (p probe) describe(t0 time.Time) string {
	ms := func(t time.Time) time.Duration { return t.Sub(t0).Round(time.Millisecond) }
	return fmt.Sprintf("answered %v by an attempt started %v; forward first connected %v; %d attempts refused, %d connected without an answer",
		ms(p.at), ms(p.started), ms(p.connected), p.refused, p.failed)
}

// firstResponse GETs path through host port port until the guest
// answers. Attempts overlap: before the guest listens, one may fail at
// once (nothing listens on the host port yet, or the forward's
// connection to the guest is reset) or wait in the user network's
// forwarder (resolving the guest's address, or retransmitting a SYN),
// and one waiting must not hold back the next. A new attempt starts
// every 2% of the time elapsed (between 1 and 50 ms), so that polling
// neither slows a slow boot (on nested KVM the guest, vmm-net and this
// client share one CPU) nor adds more than that to a fast one. An
// answer other than 200 is an error at once, not retried.
func firstResponse(v *netVM, port int, path string, timeout time.Duration) (probe, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type result struct {
		body        string
		start, at   time.Time
		err         error
		fatal, conn bool
	}
	const maxPending = 64
	results := make(chan result, maxPending)
	var mu sync.Mutex
	var p probe
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	attempt := func() {
		r := result{start: time.Now()}
		var conn atomic.Bool // set on the transport's dialing goroutine
		send := func() {
			r.conn = conn.Load()
			results <- r
		}
		trace := &httptrace.ClientTrace{ConnectDone: func(_, _ string, err error) {
			if err == nil {
				now := time.Now()
				mu.Lock()
				if p.connected.IsZero() {
					p.connected = now
				}
				mu.Unlock()
				conn.Store(true)
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", url, nil)
		if err != nil {
			r.err, r.fatal = err, true
			send()
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			r.err = err
			send()
			return
		}
		b, err := io.ReadAll(resp.Body)
		r.at = time.Now()
		resp.Body.Close()
		switch {
		case err != nil:
			r.err = err
		case resp.StatusCode != http.StatusOK:
			r.err, r.fatal = fmt.Errorf("GET %s: %s %q", path, resp.Status, b), true
		default:
			r.body = string(b)
		}
		send()
	}
	done := func(r result) (probe, error) {
		mu.Lock()
		defer mu.Unlock()
		p.body, p.at, p.started = r.body, r.at, r.start
		return p, r.err
	}
	next := time.NewTimer(time.Millisecond)
	defer next.Stop()
	pending := 1
	go attempt()
	var last error
	for {
		select {
		case r := <-results:
			pending--
			if r.err == nil || r.fatal {
				return done(r)
			}
			last = r.err
			if r.conn {
				p.failed++
			} else {
				p.refused++
			}
		case <-next.C:
			if pending < maxPending {
				pending++
				go attempt()
			}
			next.Reset(min(max(time.Since(t0)/50, time.Millisecond), 50*time.Millisecond))
		case err := <-v.exited:
			v.exited <- err
			return done(result{err: fmt.Errorf("vmm exited (%v) before answering GET %s", err, path)})
		case <-ctx.Done():
			return done(result{err: fmt.Errorf("GET %s on port %d: no answer within %v: %v", path, port, timeout, last)})
		}
	}
}

// againGet times one more GET of path, on a new connection, once the VM
// has answered: what the first answer cost beyond a warm one (the
// forward's first connection to the guest, the server's first request).
func againGet(b *testing.B, v *netVM, port int, path string) time.Duration {
	b.Helper()
	t0 := time.Now()
	body, err := v.tryGet(port, path, time.Minute)
	d := time.Since(t0)
	if err != nil || body != "hello from amber httpd: GET "+path+"\n" {
		b.Fatalf("GET %s again: %q, %v", path, body, err)
	}
	return d
}

// stopNetVM stops v (SIGTERM: the VM stops, vmm tears it down, vmm-net
// with it) and waits for vmm to exit.
func stopNetVM(v *netVM) {
	v.cmd.Process.Signal(syscall.SIGTERM)
	err := <-v.exited
	v.exited <- err
}

// restorePhaseRE is a line of vmm restore --boot-time: the phase's name,
// its time and the running total.
var restorePhaseRE = regexp.MustCompile(`^vmm: restore (.+?)\s+(\S+)\s+\((\S+)\)$`)

// restorePhases reads the phases vmm restore --boot-time printed.
func restorePhases(out string) (names []string, ds []time.Duration) {
	for _, l := range strings.Split(out, "\n") {
		m := restorePhaseRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[2])
		if err != nil {
			continue
		}
		names = append(names, m[1])
		ds = append(ds, d)
	}
	return names, ds
}

// startNetHelper times vmm-net alone: from its exec to its "ready" (its
// package initialisation, gVisor's stack made, the forward listening),
// the part of a restore's network that vmm restore waits for before the
// guest runs. It is given a socket pair's end as vmm gives it; closing
// ours makes it exit.
func startNetHelper(b *testing.B, forward string) time.Duration {
	b.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "vmm side"), os.NewFile(uintptr(fds[1]), "vmm-net side")
	defer ours.Close()
	cmd := exec.Command(filepath.Join(filepath.Dir(vmmBin), "vmm-net"), "-mac", "52:54:00:12:34:56", "-hostfwd", forward)
	cmd.ExtraFiles = []*os.File{theirs}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	theirs.Close()
	line := make([]byte, 256)
	n, _ := io.ReadAtLeast(out, line, len("ready"))
	d := time.Since(t0)
	ours.Close()
	werr := cmd.Wait()
	if !strings.HasPrefix(string(line[:n]), "ready") {
		b.Fatalf("vmm-net: %q, %v\n%s", line[:n], werr, stderr.String())
	}
	return d
}

// BenchmarkRestoreHTTP: from nothing to the first HTTP response of a
// web server, restored from a snapshot against a cold boot of the same
// image, in the same run. apps/httpd on the user network, forwarded from
// a host port the kernel chose, is snapshotted (vmm snapshot --stop)
// once it answers. Then, interleaved (the order alternating, as a VM's
// teardown slows what follows), 7 repetitions (5 in the nested KVM
// stage) of: vmm run of the image on a fresh store disk with the same
// forward, and vmm restore of the store's snapshot (the same store each
// time: a restore leaves the snapshot as it was, and listens on the
// snapshot's host port), each timed from before the vmm process is
// started to the answer's body read through the forward; the answer
// must be the server's, or the benchmark fails. The processes are what a
// user runs: exec, vmm's start, the vmm-net process of the user network
// and the VM. Also timed: vmm-net started alone (restore waits for it
// before the guest runs; vmm run boots the guest meanwhile), each VM's
// forward up to its first accepted connection (vmm-net listening), the
// cold boot's guest up to httpd's "listening" line on the console, the
// restore's phases (vmm restore --boot-time), and, outside the clock, a
// second GET on a new connection after the first answer. Medians.
func BenchmarkRestoreHTTP(b *testing.B) {
	needKVM(b)
	img := image(b, "../../apps/httpd")
	buildNetHelper(b)
	runs := 7
	if prebuilt != "" {
		runs = 5 // nested KVM: each VM takes seconds
	}
	dir, store := storeRunDir(b)
	sock := filepath.Join(dir, "vm.sock")
	orig := startNetVM(b, "run", "--disk", store, "--api", sock, "--net", "user,hostfwd=tcp:127.0.0.1:0-:80", img)
	port := orig.forwardedPort(b)
	if body := orig.get(b, port, "/warm"); body != "hello from amber httpd: GET /warm\n" {
		b.Fatalf("GET /warm: %q", body)
	}
	if r := run(b, "snapshot", "--api", sock, "--stop", "warm"); r.code != 0 {
		b.Fatalf("vmm snapshot: exit %d\n%s", r.code, r.stderr)
	}
	err := <-orig.exited
	orig.exited <- err
	// The same forward for every VM: the snapshot's (a restore listens on
	// it), and a fixed port for vmm run, which then boots the guest while
	// vmm-net starts (with port 0 it would wait for vmm-net to learn the
	// port first).
	forward := fmt.Sprintf("tcp:127.0.0.1:%d-:80", port)

	// coldFwd and restoreFwd: to the forward's first accepted connection
	// (vmm-net listening).
	// coldAgain and restoreAgain: a second GET, on a new connection.
	var cold, coldFwd, listening, restore, restoreFwd, helper, coldAgain, restoreAgain []time.Duration
	phases := map[string][]time.Duration{}
	var order []string
	check := func(what string, v *netVM, path, body string, err error) {
		b.Helper()
		if err != nil {
			b.Fatalf("%s: %v\n%s", what, err, v.output())
		}
		if want := "hello from amber httpd: GET " + path + "\n"; body != want {
			b.Fatalf("%s: GET %s answered %q, want %q", what, path, body, want)
		}
	}
	coldBoot := func(r int) {
		d := filepath.Join(dir, "cold"+strconv.Itoa(r)+".store")
		if res := run(b, "store", "create", d, "--disk-size", "16M"); res.code != 0 {
			b.Fatalf("store create: exit %d\n%s", res.code, res.stderr)
		}
		path := fmt.Sprintf("/cold%d", r)
		t0 := time.Now()
		v := startNetVM(b, "run", "--disk", d, "--net", "user,hostfwd="+forward, img)
		heard := make(chan time.Time, 1)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case l := <-v.lines:
					if strings.Contains(l, "httpd: listening") {
						heard <- time.Now()
						return
					}
				case <-stop:
					return
				}
			}
		}()
		p, err := firstResponse(v, port, path, 5*time.Minute)
		close(stop)
		check("cold boot", v, path, p.body, err)
		cold = append(cold, p.at.Sub(t0))
		coldFwd = append(coldFwd, p.connected.Sub(t0))
		heardAt := "not seen"
		select {
		case h := <-heard:
			listening = append(listening, h.Sub(t0))
			heardAt = h.Sub(t0).Round(time.Millisecond).String()
		case <-time.After(time.Second):
		}
		again := againGet(b, v, port, path+"/again")
		coldAgain = append(coldAgain, again)
		b.Logf("cold boot %d: %s; httpd listening %s; GET again %v", r, p.describe(t0), heardAt, again.Round(time.Millisecond))
		stopNetVM(v)
	}
	restoreOnce := func(r int) {
		path := fmt.Sprintf("/restore%d", r)
		t0 := time.Now()
		v := startNetVM(b, "restore", "--boot-time", store+"@warm")
		p, err := firstResponse(v, port, path, 5*time.Minute)
		check("restore", v, path, p.body, err)
		restore = append(restore, p.at.Sub(t0))
		restoreFwd = append(restoreFwd, p.connected.Sub(t0))
		again := againGet(b, v, port, path+"/again")
		restoreAgain = append(restoreAgain, again)
		b.Logf("restore %d: %s; GET again %v", r, p.describe(t0), again.Round(time.Millisecond))
		stopNetVM(v)
		// vmm printed its phases before it exited; the reader of its
		// output may still be taking in the last of them.
		out := v.output()
		for i := 0; i < 100; i++ {
			time.Sleep(10 * time.Millisecond)
			o := v.output()
			if o == out && strings.Contains(o, "vmm: restore ") {
				break
			}
			out = o
		}
		names, ds := restorePhases(out)
		if len(names) == 0 {
			b.Fatalf("vmm restore --boot-time printed no phases:\n%s", v.output())
		}
		for i, n := range names {
			if _, ok := phases[n]; !ok {
				order = append(order, n)
			}
			phases[n] = append(phases[n], ds[i])
		}
	}
	for r := 0; r < runs; r++ {
		if r%2 == 0 {
			coldBoot(r)
			restoreOnce(r)
		} else {
			restoreOnce(r)
			coldBoot(r)
		}
		helper = append(helper, startNetHelper(b, "tcp:127.0.0.1:0-:80"))
	}
	if r := run(b, "store", "fsck", store); r.code != 0 {
		b.Errorf("fsck of the store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, rs, h := median(cold), median(restore), median(helper)
	var pl []string
	for _, n := range order {
		pl = append(pl, fmt.Sprintf("%s %v", n, median(phases[n]).Round(10*time.Microsecond)))
	}
	l := time.Duration(0)
	if len(listening) > 0 {
		l = median(listening)
	}
	b.Logf("to the first HTTP response (medians of %d): cold boot %v (forward listening at %v, httpd at %v), restore %v (forward listening at %v): ratio restore/cold %.2f; a second GET after the first answer: cold %v, restore %v; vmm-net alone to ready %v\n\tcold %v\n\trestore %v\n\trestore phases (medians): %s",
		runs, c, median(coldFwd), l, rs, median(restoreFwd), float64(rs)/float64(c), median(coldAgain), median(restoreAgain), h, cold, restore, strings.Join(pl, ", "))
	b.ReportMetric(float64(c.Microseconds())/1000, "cold-http-ms")
	b.ReportMetric(float64(rs.Microseconds())/1000, "restore-http-ms")
	b.ReportMetric(float64(rs)/float64(c), "ratio")
	b.ReportMetric(float64(h.Microseconds())/1000, "vmm-net-ready-ms")
	if fe := phases["first exit"]; len(fe) > 0 {
		b.ReportMetric(float64(median(fe).Microseconds())/1000, "restore-first-exit-ms")
	}
}
