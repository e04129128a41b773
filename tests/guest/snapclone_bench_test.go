package guest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cloneVM is a vmm restore --clone process whose stdout lines arrive on
// lines.
type cloneVM struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startClone(b *testing.B, args ...string) *cloneVM {
	c := &cloneVM{cmd: exec.Command(vmmBin, args...), lines: make(chan string, 100)}
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// answer sends a line and waits for its echo.
func (c *cloneVM) answer(line string, timeout time.Duration) error {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return err
	}
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return fmt.Errorf("the clone ended without answering %q", line)
			}
			if l == "echo "+line {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no answer to %q within %v", line, timeout)
		}
	}
}

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

// BenchmarkCloneDensity: a guest that answers lines on stdin
// (testdata/snapecho) is snapshotted while it waits; clones of the
// snapshot (vmm restore --clone, one process and one clone store each)
// are started one after another, each answering a line before the next
// starts, up to 20 clones or until one fails to start or answer. Then,
// with all of them running: clones/s (started and answered), and per
// clone the VMM process's RSS, its private pages (the VMM's own memory
// plus the guest pages the clone wrote; pages mapped from the base store
// are shared through the page cache) and its PSS; and the count reached.
// The standard input is the clone's only device in use: the snapshot has
// no network (the HTTP server of the benchmark needs the network
// backend's state in snapshots, not there yet).
func BenchmarkCloneDensity(b *testing.B) {
	needKVM(b)
	img := image(b, "./testdata/snapecho")
	const maxClones = 20
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		b.Setenv("XDG_RUNTIME_DIR", dir)
		store := filepath.Join(dir, "vm.store")
		if r := run(b, "store", "create", store, "--disk-size", "16M"); r.code != 0 {
			b.Fatalf("store create: exit %d\n%s", r.code, r.stderr)
		}
		sock := filepath.Join(dir, "vm.sock")
		orig := startClone(b, "run", "--disk", store, "--api", sock, img)
		if err := orig.waitLine("ready", 240*time.Second); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // into its read
		if r := run(b, "snapshot", "--api", sock, "--stop", "warm"); r.code != 0 {
			b.Fatalf("vmm snapshot: exit %d\n%s", r.code, r.stderr)
		}
		orig.cmd.Wait()

		var clones []*cloneVM
		defer func() {
			for _, c := range clones {
				c.cmd.Process.Kill()
				c.cmd.Wait()
			}
		}()
		var failure error
		t0 := time.Now()
		for k := 1; k <= maxClones; k++ {
			c := startClone(b, "restore", "--clone", filepath.Join(dir, fmt.Sprintf("c%d.store", k)), store+"@warm")
			clones = append(clones, c)
			if err := c.answer(fmt.Sprintf("clone %d", k), 120*time.Second); err != nil {
				failure = fmt.Errorf("clone %d: %v", k, err)
				clones = clones[:len(clones)-1]
				c.cmd.Process.Kill()
				c.cmd.Wait()
				break
			}
		}
		elapsed := time.Since(t0)
		if len(clones) == 0 {
			b.Fatalf("no clone answered: %v", failure)
		}
		if failure != nil {
			b.Logf("stopped at %d clones: %v", len(clones), failure)
		}
		// All still running: each answers again.
		var rss, priv, pss []int64
		for k, c := range clones {
			if err := c.answer(fmt.Sprintf("again %d", k+1), 120*time.Second); err != nil {
				b.Errorf("clone %d, with all running: %v", k+1, err)
			}
			m, err := smapsKiB(c.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			rss = append(rss, m["Rss"])
			priv = append(priv, m["Private_Clean"]+m["Private_Dirty"])
			pss = append(pss, m["Pss"])
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
		b.ReportMetric(float64(fi.Size())/1024, "clone-store-KiB")
		if r := run(b, "store", "fsck", store); r.code != 0 {
			b.Errorf("fsck of the base: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
}

// waitLine waits for a line.
func (c *cloneVM) waitLine(want string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return fmt.Errorf("ended before %q", want)
			}
			if l == want {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no %q within %v", want, timeout)
		}
	}
}
