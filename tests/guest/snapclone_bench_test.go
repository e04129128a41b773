package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smapsKiB returns fields of /proc/PID/smaps_rollup, in KiB.
func smapsKiB(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == "kB" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			m[strings.TrimSuffix(f[0], ":")] = v
		}
	}
	return m, nil
}

func medianInt(v []int64) int64 {
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// pidsOf returns pid and its descendants (a clone's vmm and its vmm-net).
func pidsOf(pid int) []int {
	parent := map[int]int{}
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ')'.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				parent[p], _ = strconv.Atoi(f[1])
			}
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for c, pp := range parent {
			if pp == out[i] {
				out = append(out, c)
			}
		}
	}
	return out
}

// BenchmarkCloneDensity: apps/httpd on the user network, its forward on
// a host port the kernel chooses, is snapshotted once it answers;
// clones of the snapshot (vmm restore --clone, one vmm process, one
// vmm-net process and one clone store each; each clone's forward on a
// port of its own, printed) are started one after another, each
// answering an HTTP GET through its own forward before the next starts,
// up to 20 clones (8 in the nested KVM stage) or until one fails to
// start or answer. Then, with all of them running, each answers again:
// clones/s (started and answered), and per clone the RSS, private pages
// and PSS of its vmm (the VMM's own memory plus the guest pages the
// clone wrote; pages mapped from the base store are shared through the
// page cache) and of its vmm-net; and the count reached.
func BenchmarkCloneDensity(b *testing.B) {
	needKVM(b)
	img := image(b, "../../apps/httpd")
	buildNetHelper(b)
	maxClones := 20
	if prebuilt != "" {
		maxClones = 8 // nested KVM: minutes, not seconds
	}
	for i := 0; i < b.N; i++ {
		dir, store := storeRunDir(b)
		sock := filepath.Join(dir, "vm.sock")
		orig := startNetVM(b, "run", "--disk", store, "--api", sock, "--net", "user,hostfwd=tcp:127.0.0.1:0-:80", img)
		orig.get(b, orig.forwardedPort(b), "/warm")
		if r := run(b, "snapshot", "--api", sock, "--stop", "warm"); r.code != 0 {
			b.Fatalf("vmm snapshot: exit %d\n%s", r.code, r.stderr)
		}
		err := <-orig.exited
		orig.exited <- err

		type clone struct {
			vm   *netVM
			port int
		}
		var clones []clone
		var failure error
		t0 := time.Now()
		for k := 1; k <= maxClones; k++ {
			c := startNetVM(b, "restore", "--clone", filepath.Join(dir, fmt.Sprintf("c%d.store", k)), store+"@warm")
			port, err := c.tryPort(2 * time.Minute)
			if err == nil {
				_, err = c.tryGet(port, fmt.Sprintf("/clone%d", k), 2*time.Minute)
			}
			if err != nil {
				failure = fmt.Errorf("clone %d: %v", k, err)
				c.cmd.Process.Kill()
				break
			}
			clones = append(clones, clone{c, port})
		}
		elapsed := time.Since(t0)
		if len(clones) == 0 {
			b.Fatalf("no clone answered: %v", failure)
		}
		if failure != nil {
			b.Logf("stopped at %d clones: %v", len(clones), failure)
		}
		// All still running: each answers again.
		var rss, priv, pss, netRSS, netPriv []int64
		for k, c := range clones {
			if _, err := c.vm.tryGet(c.port, fmt.Sprintf("/again%d", k+1), 2*time.Minute); err != nil {
				b.Errorf("clone %d, with all running: %v", k+1, err)
			}
			pids := pidsOf(c.vm.cmd.Process.Pid)
			for j, pid := range pids {
				m, err := smapsKiB(pid)
				if err != nil {
					b.Fatal(err)
				}
				if j == 0 {
					rss = append(rss, m["Rss"])
					priv = append(priv, m["Private_Clean"]+m["Private_Dirty"])
					pss = append(pss, m["Pss"])
				} else {
					netRSS = append(netRSS, m["Rss"])
					netPriv = append(netPriv, m["Private_Clean"]+m["Private_Dirty"])
				}
			}
		}
		fi, err := os.Stat(filepath.Join(dir, "c1.store"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(clones)), "clones")
		b.ReportMetric(float64(len(clones))/elapsed.Seconds(), "clones/s")
		b.ReportMetric(float64(medianInt(rss))/1024, "rss-MiB/clone")
		b.ReportMetric(float64(medianInt(priv))/1024, "private-MiB/clone")
		b.ReportMetric(float64(medianInt(pss))/1024, "pss-MiB/clone")
		if len(netRSS) > 0 {
			b.ReportMetric(float64(medianInt(netRSS))/1024, "vmm-net-rss-MiB/clone")
			b.ReportMetric(float64(medianInt(netPriv))/1024, "vmm-net-private-MiB/clone")
		}
		b.ReportMetric(float64(fi.Size())/1024, "clone-store-KiB")
		for _, c := range clones {
			c.vm.cmd.Process.Signal(syscall.SIGTERM)
			err := <-c.vm.exited
			c.vm.exited <- err
		}
		if r := run(b, "store", "fsck", store); r.code != 0 {
			b.Errorf("fsck of the base: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
}
