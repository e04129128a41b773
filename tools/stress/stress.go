package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/amberos/amber/tools/guestrun"
)

// program is one guest the stress runs boot again and again.
type program struct {
	name      string
	pkg       string   // relative to the module root
	args      []string // full runs
	shortArgs []string // the short runs in make test
	mem       string
	want      string // printed on success
}

var programs = []program{
	{"gcstress", "./tests/guest/testdata/gcstress", []string{"1s"}, []string{"200ms"}, "", "gcstress ok"},
	{"torture", "./tests/guest/testdata/torture", nil, nil, "512M", "torture: all passed"},
	{"getpid", "./tests/guest/testdata/getpid", []string{"1000000"}, []string{"20000"}, "", "getpid_ns="},
	{"leafcalls", "./tests/guest/testdata/leafcalls", []string{"300000"}, []string{"20000"}, "", "calls agree"},
	{"sigtimer", "./tools/stress/testdata/sigtimer", []string{"400"}, []string{"100"}, "", "sigtimer ok"},
	{"chanstress", "./tools/stress/testdata/chanstress", []string{"4000"}, []string{"500"}, "", "chanstress ok"},
}

// options for one stress session.
type options struct {
	root     string // module root
	vmm      string // the vmm binary
	accel    guestrun.Accel
	runs     int
	hogs     int
	parallel int
	short    bool
	timeout  time.Duration
	only     []string
	logDir   string // failures' full output; "" for none
	out      io.Writer
}

// failure is one run that did not end as it should.
type failure struct {
	prog   string
	run    int
	reason string
	output string
}

// tally is what the runs of one program came to.
type tally struct {
	runs, failed int
	times        []time.Duration
}

type report struct {
	order    []string
	tallies  map[string]*tally
	failures []failure
}

func (r *report) passed() (pass, fail int) {
	for _, t := range r.tallies {
		pass += t.runs - t.failed
		fail += t.failed
	}
	return
}

// stress builds the programs, starts the hogs and boots every program
// o.runs times, o.parallel at once, interleaved so that each sees the
// same contention.
func stress(ctx context.Context, o options) (*report, error) {
	progs := programs
	if len(o.only) > 0 {
		progs = nil
		for _, name := range o.only {
			i := slices.IndexFunc(programs, func(p program) bool { return p.name == name })
			if i < 0 {
				return nil, fmt.Errorf("unknown program %q (have %s)", name, programNames())
			}
			progs = append(progs, programs[i])
		}
	}
	imgDir, err := os.MkdirTemp("", "amber-stress-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(imgDir)
	images := map[string]string{}
	for _, p := range progs {
		img := filepath.Join(imgDir, p.name+".img")
		cmd := exec.CommandContext(ctx, o.vmm, "build", "-o", img, p.pkg)
		cmd.Dir = o.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vmm build %s: %v\n%s", p.pkg, err, out)
		}
		images[p.name] = img
	}

	stopHogs, err := startHogs(o.hogs, o.timeout*time.Duration(o.runs*len(progs)+1))
	if err != nil {
		return nil, err
	}
	defer stopHogs()
	fmt.Fprintf(o.out, "stress: %d programs x %d runs on %s, %d at a time, %d CPU hogs beside them\n",
		len(progs), o.runs, o.accel, o.parallel, o.hogs)

	rep := &report{tallies: map[string]*tally{}}
	for _, p := range progs {
		rep.order = append(rep.order, p.name)
		rep.tallies[p.name] = &tally{}
	}
	type job struct {
		p   program
		run int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < o.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				args := j.p.args
				if o.short {
					args = j.p.shortArgs
				}
				res, err := guestrun.Run(ctx, o.accel, guestrun.Config{
					VMM: o.vmm, Image: images[j.p.name], Args: args, Mem: j.p.mem, Timeout: o.timeout,
				})
				if ctx.Err() != nil {
					continue // stopped by the user: not a run of the program
				}
				reason := judge(j.p, res, err)
				mu.Lock()
				t := rep.tallies[j.p.name]
				t.runs++
				t.times = append(t.times, res.Elapsed)
				if reason != "" {
					t.failed++
					f := failure{j.p.name, j.run, reason, res.Output()}
					rep.failures = append(rep.failures, f)
					fmt.Fprintf(o.out, "FAIL %s run %d: %s\n%s\n", f.prog, f.run, f.reason, tail(f.output, 40))
					if o.logDir != "" {
						name := filepath.Join(o.logDir, fmt.Sprintf("%s-%d.log", f.prog, f.run))
						os.WriteFile(name, []byte(f.reason+"\n"+f.output), 0o644)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for run := 1; run <= o.runs && ctx.Err() == nil; run++ {
		for _, p := range progs {
			select {
			case jobs <- job{p, run}:
			case <-ctx.Done():
			}
		}
	}
	close(jobs)
	wg.Wait()
	return rep, ctx.Err()
}

// judge says why a run failed, or "" if it did not.
func judge(p program, r guestrun.Result, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case r.TimedOut:
		return fmt.Sprintf("timed out after %v", r.Elapsed.Round(time.Millisecond))
	case r.Status != 0:
		return fmt.Sprintf("exit status %d", r.Status)
	case !strings.Contains(r.Stdout, p.want):
		return fmt.Sprintf("output lacks %q", p.want)
	case strings.Contains(r.Output(), "amber: "):
		return "the kernel complained"
	}
	return ""
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = append([]string{fmt.Sprintf("[... %d lines]", len(l)-lines)}, l[len(l)-lines:]...)
	}
	return "    " + strings.Join(l, "\n    ")
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "%-12s %6s %8s %12s\n", "program", "runs", "failed", "median")
	for _, name := range r.order {
		t := r.tallies[name]
		fmt.Fprintf(w, "%-12s %6d %8d %12v\n", name, t.runs, t.failed, median(t.times).Round(time.Millisecond))
	}
	pass, fail := r.passed()
	fmt.Fprintf(w, "stress: %d passed, %d failed\n", pass, fail)
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func programNames() string {
	var n []string
	for _, p := range programs {
		n = append(n, p.name)
	}
	return strings.Join(n, ", ")
}

// hogEnv marks a process started as a CPU hog; its value is the deadline
// (Unix nanoseconds) after which it stops by itself.
const hogEnv = "AMBER_STRESS_HOG"

// startHogs starts n processes that each keep a core busy until stop is
// called, the parent dies (Pdeathsig) or max has passed.
func startHogs(n int, max time.Duration) (stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var procs []*exec.Cmd
	stop = func() {
		for _, c := range procs {
			c.Process.Kill()
			c.Wait()
		}
	}
	deadline := time.Now().Add(max).UnixNano()
	for i := 0; i < n; i++ {
		c := exec.Command(self)
		c.Env = append(os.Environ(), fmt.Sprintf("%s=%d", hogEnv, deadline))
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		procs = append(procs, c)
	}
	return stop, nil
}

// hogIfAsked runs the hog loop and exits when this process was started
// as a hog.
func hogIfAsked() {
	v := os.Getenv(hogEnv)
	if v == "" {
		return
	}
	var deadline int64
	fmt.Sscan(v, &deadline)
	x := uint64(1)
	for i := 0; ; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		if i%(1<<20) == 0 && time.Now().UnixNano() > deadline {
			break
		}
	}
	if x == 42 {
		fmt.Println(x)
	}
	os.Exit(0)
}

// moduleRoot finds the directory of Amber's go.mod above dir.
func moduleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/amberos/amber\n") {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("not inside Amber's source tree (no go.mod of github.com/amberos/amber above %s)", dir)
		}
		d = parent
	}
}
