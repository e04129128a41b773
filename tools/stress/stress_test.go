package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/tools/guestrun"
)

func TestMain(m *testing.M) {
	hogIfAsked()
	os.Exit(m.Run())
}

// TestStressShort is make test's slice of make stress: every stress
// program booted many times, two at a time, with a CPU hog per host core
// beside them. 20 runs each on KVM; under QEMU's emulator (no usable
// /dev/kvm) a run costs ten times more, so 8.
func TestStressShort(t *testing.T) {
	accel, err := guestrun.Detect()
	if err != nil {
		t.Skip(err)
	}
	runs := 20
	if accel == guestrun.TCG {
		runs = 8
	}
	if testing.Short() {
		runs = 2
	}
	root, err := moduleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	vmmBin := filepath.Join(t.TempDir(), "vmm")
	cmd := exec.Command("go", "build", "-o", vmmBin, "./tools/vmm")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building vmm: %v\n%s", err, out)
	}
	var out strings.Builder
	timeout := 60 * time.Second
	if accel == guestrun.TCG {
		timeout = 300 * time.Second
	}
	rep, err := stress(context.Background(), options{
		root: root, vmm: vmmBin, accel: accel, runs: runs, hogs: runtime.NumCPU(), parallel: 2,
		short: true, timeout: timeout, out: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	rep.print(&out)
	t.Log("\n" + out.String())
	if _, failed := rep.passed(); failed > 0 {
		t.Errorf("%d of the stress runs failed:\n%s", failed, out.String())
	}
	for _, name := range rep.order {
		if got := rep.tallies[name].runs; got != runs {
			t.Errorf("%s ran %d times, want %d", name, got, runs)
		}
	}
}

// TestJudge: a run passes only with status 0, the program's success line
// and no kernel complaint.
func TestJudge(t *testing.T) {
	p := program{name: "x", want: "x ok"}
	cases := []struct {
		r    guestrun.Result
		fail bool
	}{
		{guestrun.Result{Stdout: "x ok\n"}, false},
		{guestrun.Result{Stdout: "x ok\n", Status: 2}, true},
		{guestrun.Result{Stdout: "nothing\n"}, true},
		{guestrun.Result{Stdout: "x ok\n", TimedOut: true, Status: -1}, true},
		{guestrun.Result{Stdout: "x ok\namber: fault in the kernel\n"}, true},
		{guestrun.Result{Stdout: "x ok\n", Stderr: "amber: deadlock\n"}, true},
	}
	for i, c := range cases {
		if got := judge(p, c.r, nil) != ""; got != c.fail {
			t.Errorf("case %d: failed=%v, want %v (%q)", i, got, c.fail, judge(p, c.r, nil))
		}
	}
}
