package storecmd

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/vmm"
)

// newDisks returns a fresh raw disk image and a store file holding a
// disk object (what vmm run --disk takes), both blank, 16 MiB.
func newDisks(t *testing.T) (raw, st string) {
	t.Helper()
	dir := t.TempDir()
	raw = filepath.Join(dir, "data.raw")
	if err := os.WriteFile(raw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 16<<20); err != nil {
		t.Fatal(err)
	}
	st = filepath.Join(dir, "vm.store")
	must(t, nil, "create", st, "--disk-size", "16M")
	return raw, st
}

// fsckData checks the outer store (for a store disk) and the guest's
// store on the disk.
func fsckData(t *testing.T, file string) {
	t.Helper()
	var disk vmm.BlockBackend
	var err error
	if vmm.IsStoreDisk(file) {
		if out := must(t, nil, "fsck", file); !strings.Contains(out, "clean") {
			t.Fatalf("fsck of the outer store: %s", out)
		}
		disk, err = vmm.OpenStoreDisk(file, true)
	} else {
		disk, err = vmm.OpenRawDisk(file, true)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if rep := objstore.Fsck(fixedDisk{disk}); !rep.OK() {
		t.Fatalf("fsck of the disk's store:\n%s", rep)
	}
}

// ls, get, put and rm on FILE:/data work the same on a raw disk and on a
// store's disk object, starting from a blank disk.
func TestDataCommands(t *testing.T) {
	raw, st := newDisks(t)
	for _, file := range []string{raw, st} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if r := run(t, nil, "ls", file+":/data"); r.code != 1 || !strings.Contains(r.stderr, "not a disk written by a guest") {
				t.Fatalf("ls of a blank disk: %+v", r)
			}
			must(t, []byte(`{"a":1}`), "put", file+":/data/etc/app/config.json", "-")
			must(t, []byte("two"), "put", file+":/data/two", "-")
			if got := must(t, nil, "get", file+":/data/etc/app/config.json"); got != `{"a":1}` {
				t.Fatalf("get: %q", got)
			}
			out := must(t, nil, "ls", file+":/data")
			if !strings.Contains(out, "etc/") || !strings.Contains(out, "two") {
				t.Fatalf("ls:\n%s", out)
			}
			must(t, nil, "rm", file+":/data/two")
			if r := run(t, nil, "get", file+":/data/two"); r.code != 1 || !strings.Contains(r.stderr, "no such file") {
				t.Fatalf("get after rm: %+v", r)
			}
			fsckData(t, file)
		})
	}
	// The store's other objects are not the disk's business.
	if out := must(t, nil, "ls", st); !strings.Contains(out, "vm/disk") {
		t.Fatalf("ls of the store:\n%s", out)
	}
}

// While a VM uses the disk (the VMM holds its lock: exclusive, or shared
// for a read-only disk), the commands refuse it with who holds it; a
// read-only VM still lets the host read.
func TestDataInUse(t *testing.T) {
	raw, st := newDisks(t)
	for _, file := range []string{raw, st} {
		must(t, []byte("x"), "put", file+":/data/x", "-")
		open := vmm.OpenRawDisk
		if vmm.IsStoreDisk(file) {
			open = vmm.OpenStoreDisk
		}
		d, err := open(file, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"put", file + ":/data/y", "-"}, {"get", file + ":/data/x"}, {"ls", file + ":/data"}, {"rm", file + ":/data/x"}} {
			if r := run(t, []byte("y"), args...); r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("is in use by pid %d", os.Getpid())) {
				t.Errorf("%s while a VM writes the disk: %+v", args[0], r)
			}
		}
		d.Close()
		d, err = open(file, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := must(t, nil, "get", file+":/data/x"); got != "x" {
			t.Errorf("get while a read-only VM runs: %q", got)
		}
		if r := run(t, []byte("y"), "put", file+":/data/y", "-"); r.code != 1 || !strings.Contains(r.stderr, "in use by pid") {
			t.Errorf("put while a read-only VM runs: %+v", r)
		}
		// And the VMM refuses a disk the host is writing.
		if _, err := open(file, false); err == nil || !strings.Contains(err.Error(), "in use by pid") {
			t.Errorf("a second VM on the disk: %v", err)
		}
		d.Close()
	}
}

// kill -9 of `vmm store put FILE:/data/...` at random moments, on a
// store's disk object: every put that returned is intact, the killed one
// is there whole or not at all, and both stores pass fsck.
func TestDataPutKill9(t *testing.T) {
	_, st := newDisks(t)
	src := filepath.Join(t.TempDir(), "src")
	want := map[string][]byte{}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	killed := 0
	var full time.Duration // how long a put takes, measured by the first
	for i := 0; i < 12; i++ {
		content := bytes.Repeat([]byte(fmt.Sprintf("file %d|", i)), 200_000+rng.IntN(200_000))
		if err := os.WriteFile(src, content, 0o644); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("/data/d%d/f", i%3)
		cmd := exec.Command(os.Args[0], "put", st+":"+name, src)
		cmd.Env = append(os.Environ(), "STORECMD_CHILD=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		kill := time.Hour
		if i > 0 {
			kill = time.Duration(rng.Int64N(int64(full)))
		}
		select {
		case err = <-done:
		case <-time.After(kill):
			cmd.Process.Signal(syscall.SIGKILL)
			err = <-done
		}
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		switch {
		case err == nil:
			want[name] = content
			if i == 0 {
				full = time.Since(start)
			}
		case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
			killed++
			r := run(t, nil, "get", st+":"+name)
			if r.code == 0 && r.stdout != string(content) && r.stdout != string(want[name]) {
				t.Fatalf("put %d killed: %s holds neither the old nor the new content (%d bytes)", i, name, len(r.stdout))
			}
			if r.code == 0 {
				want[name] = []byte(r.stdout)
			}
		default:
			t.Fatalf("put %d: %v\n%s", i, err, stderr.String())
		}
		fsckData(t, st)
		for n, c := range want {
			if got := must(t, nil, "get", st+":"+n); got != string(c) {
				t.Fatalf("after put %d: %s changed (%d bytes, want %d)", i, n, len(got), len(c))
			}
		}
	}
	t.Logf("%d of 12 puts killed", killed)
	if killed == 0 {
		t.Fatal("no put was killed: the test tested nothing")
	}
}
