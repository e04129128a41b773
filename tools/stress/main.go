// Command stress boots guest programs that lean on the kernel's hardest
// paths (preemption, signals, timers, the collector, system-call entry and
// exit) many times each while CPU hogs compete for the host's cores, and
// reports runs and failures with each failure's output. A race that shows
// once in a thousand runs under load is a bug; this is how it is found.
//
// `make stress` runs it with its defaults; `go run ./tools/stress -help`
// lists the flags. Guests boot on KVM through the vmm binary, or under
// QEMU TCG where /dev/kvm is not usable (-accel).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/amberos/amber/tools/guestrun"
)

func main() {
	hogIfAsked()
	os.Exit(realMain(os.Args[1:]))
}

func realMain(argv []string) int {
	fs := flag.NewFlagSet("stress", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: go run ./tools/stress [flags]

Boots each stress program -runs times, -parallel at once, while -hogs
processes keep the host's cores busy; prints every failure's output and
a table of runs, failures and median run time; exits 1 if any run failed.

Programs: %s.

Flags:
`, programNames())
		fs.PrintDefaults()
	}
	runs := fs.Int("runs", 200, "boots of each program")
	hogs := fs.Int("hogs", runtime.NumCPU(), "CPU-hog processes running beside the guests (0: none)")
	parallel := fs.Int("parallel", 1, "guests running at once")
	accel := fs.String("accel", "auto", "how guests run: kvm (vmm run), tcg (QEMU) or auto (kvm when /dev/kvm is usable)")
	vmmBin := fs.String("vmm", "", "the vmm binary (default: bin/vmm in the source tree, built if missing)")
	only := fs.String("programs", "", "comma-separated subset of the programs")
	short := fs.Bool("short", false, "smaller workloads per run (what make test uses)")
	timeout := fs.Duration("timeout", 0, "per-run limit; a run that takes longer fails (default 60s on KVM, 300s under TCG)")
	logDir := fs.String("logs", "", "directory to write each failure's full output to")
	if err := fs.Parse(argv); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *runs < 1 || *hogs < 0 || *parallel < 1 {
		fmt.Fprintln(os.Stderr, "stress: -runs and -parallel must be at least 1, -hogs at least 0, and there are no operands")
		return 2
	}
	a, err := guestrun.Parse(*accel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress:", err)
		return 2
	}
	root, err := moduleRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress:", err)
		return 2
	}
	bin := *vmmBin
	if bin == "" {
		bin = filepath.Join(root, "bin", "vmm")
		if _, err := os.Stat(bin); err != nil {
			cmd := exec.Command("go", "build", "-o", bin, "./tools/vmm")
			cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "stress: building vmm:", err)
				return 2
			}
		}
	}
	if *timeout == 0 {
		*timeout = 60 * time.Second
		if a == guestrun.TCG {
			*timeout = 300 * time.Second
		}
	}
	if *logDir != "" {
		if err := os.MkdirAll(*logDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "stress:", err)
			return 2
		}
	}
	var names []string
	if *only != "" {
		names = strings.Split(*only, ",")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rep, err := stress(ctx, options{
		root: root, vmm: bin, accel: a, runs: *runs, hogs: *hogs, parallel: *parallel,
		short: *short, timeout: *timeout, only: names, logDir: *logDir, out: os.Stdout,
	})
	if rep != nil {
		rep.print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress:", err)
		return 2
	}
	if _, failed := rep.passed(); failed > 0 {
		return 1
	}
	return 0
}
