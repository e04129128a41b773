package guest

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amberos/amber/vmm"
)

// readyWriter signals ready when the guest has printed "ready".
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	once  sync.Once
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "ready\n") {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// BenchmarkRestore: a guest waiting for a line on stdin, from nothing to
// the guest done (it read the line, printed it and exited; VM torn down
// after the clock stops), restored from a snapshot taken while it waited,
// against a cold boot of the same image with the same disk and memory, in
// the same run; with 256 MiB and 2 GiB of guest memory through the same
// code (restore maps memory instead of reading it, so its time should not
// grow with the size: the goal is 2 GiB within 20% of 256 MiB).
// restore-call-ms is vmm.Restore alone: opening the store, replacing the
// disk object, creating the VM, mapping memory, loading vCPU and device
// state; first-exit-ms is from the restore's start to the guest's first
// exit after it (an upper bound of its first instruction). The restore's
// phases (vmm.VM.RestorePhases) are logged, medians of each. Each
// repetition also restores into a VM prepared ahead (vmm.Prepare, outside
// the clock: what a pool of prepared VMs gives), the prepared-* figures.
func BenchmarkRestore(b *testing.B) {
	needKVM(b)
	img, err := vmm.OpenImage(image(b, "./testdata/snapwait"))
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	const runs = 7
	sizes := []uint64{256, 2048}
	type sized struct {
		dir, store                 string
		snap                       *vmm.SnapshotResult
		cold, restore, call, first []time.Duration
		phases                     map[string][]time.Duration
		order                      []string
		// Into a VM prepared ahead (vmm.Prepare, not timed): what a
		// pool of prepared VMs gives.
		prepared, pcall, pfirst []time.Duration
	}
	cfg := func(mib uint64, stdin io.Reader, out io.Writer, disk vmm.BlockBackend) vmm.Config {
		return vmm.Config{Image: img, Memory: mib << 20, Cmdline: []string{"amber.data=off"}, Stdin: stdin, Stdout: out, Disks: []vmm.Disk{{Backend: disk}}}
	}
	var all []*sized
	for _, mib := range sizes {
		s := &sized{dir: b.TempDir(), phases: map[string][]time.Duration{}}
		s.store = filepath.Join(s.dir, "vm.store")
		all = append(all, s)
		if err := vmm.CreateStoreDisk(s.store, 16<<20); err != nil {
			b.Fatal(err)
		}
		// The snapshot, taken while the guest waits for input.
		disk, err := vmm.OpenStoreDisk(s.store, false)
		if err != nil {
			b.Fatal(err)
		}
		pr, pw := io.Pipe()
		rw := &readyWriter{ready: make(chan struct{})}
		vm, err := vmm.New(cfg(mib, pr, rw, disk))
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := vm.Run(); done <- err }()
		select {
		case <-rw.ready:
		case err := <-done:
			b.Fatalf("the guest ended before it was ready: %v\n%s", err, rw.buf.String())
		case <-time.After(120 * time.Second):
			b.Fatal("the guest was not ready within 120s")
		}
		time.Sleep(100 * time.Millisecond) // into its read
		if s.snap, err = vm.Snapshot("warm", true); err != nil {
			b.Fatal(err)
		}
		<-done
		vm.Close()
		pw.Close()
	}
	// Interleaved, sizes and cold boot against restore, so that the
	// host's drift hits all alike; the sizes' order alternates, since a
	// VM's teardown (KVM's part is partly deferred) slows what follows.
	for r := 0; r < runs; r++ {
		for k := range sizes {
			i := k
			if r%2 == 1 {
				i = len(sizes) - 1 - k
			}
			mib, s := sizes[i], all[i]
			coldStore := filepath.Join(s.dir, "cold"+strconv.Itoa(r)+".store")
			if err := vmm.CreateStoreDisk(coldStore, 16<<20); err != nil {
				b.Fatal(err)
			}
			d, err := vmm.OpenStoreDisk(coldStore, false)
			if err != nil {
				b.Fatal(err)
			}
			var out bytes.Buffer
			t0 := time.Now()
			vm, err := vmm.New(cfg(mib, strings.NewReader("go\n"), &out, d))
			if err != nil {
				b.Fatal(err)
			}
			status, err := vm.Run()
			s.cold = append(s.cold, time.Since(t0))
			vm.Close()
			if err != nil || status != 0 || !strings.Contains(out.String(), "got go") {
				b.Fatalf("cold boot: status %d, %v\n%s", status, err, out.String())
			}

			out.Reset()
			t0 = time.Now()
			vm, err = vmm.Restore(vmm.RestoreConfig{Store: s.store, Snapshot: "warm", Image: img, Stdin: strings.NewReader("go\n"), Stdout: &out})
			if err != nil {
				b.Fatal(err)
			}
			call := time.Since(t0)
			s.call = append(s.call, call)
			status, err = vm.Run()
			s.restore = append(s.restore, time.Since(t0))
			ps := vm.RestorePhases()
			vm.Close()
			if err != nil || status != 0 || out.String() != "got go\n" {
				b.Fatalf("restore: status %d, %v, output %q (want only the line read after the snapshot)", status, err, out.String())
			}
			for _, p := range ps {
				if _, ok := s.phases[p.Name]; !ok {
					s.order = append(s.order, p.Name)
				}
				s.phases[p.Name] = append(s.phases[p.Name], p.D)
				if p.Name == "first exit" {
					s.first = append(s.first, call+p.D)
				}
			}

			pv, err := vmm.Prepare(mib << 20)
			if err != nil {
				b.Fatal(err)
			}
			out.Reset()
			t0 = time.Now()
			vm, err = vmm.Restore(vmm.RestoreConfig{Store: s.store, Snapshot: "warm", Image: img, Stdin: strings.NewReader("go\n"), Stdout: &out, Prepared: pv})
			if err != nil {
				b.Fatal(err)
			}
			call = time.Since(t0)
			s.pcall = append(s.pcall, call)
			status, err = vm.Run()
			s.prepared = append(s.prepared, time.Since(t0))
			for _, p := range vm.RestorePhases() {
				if p.Name == "first exit" {
					s.pfirst = append(s.pfirst, call+p.D)
				}
			}
			vm.Close()
			if err != nil || status != 0 || out.String() != "got go\n" {
				b.Fatalf("restore into a prepared VM: status %d, %v, output %q", status, err, out.String())
			}
		}
	}
	med := func(d []time.Duration) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return median(d)
	}
	for i, mib := range sizes {
		s := all[i]
		c, r, rc, fe := med(s.cold), med(s.restore), med(s.call), med(s.first)
		var pl []string
		for _, n := range s.order {
			pl = append(pl, fmt.Sprintf("%s %v", n, median(s.phases[n])))
		}
		b.Logf("%d MiB: snapshot paused the guest %v (%.1f MiB stored); cold boot %v, restore %v (vmm.Restore %v, first exit %v): ratio restore/cold %.2f\n\trestore phases (medians): %s",
			mib, s.snap.Pause, float64(s.snap.Meta.MemStored)/(1<<20), c, r, rc, fe, float64(r)/float64(c), strings.Join(pl, ", "))
		unit := "-" + strconv.FormatUint(mib, 10) + "M"
		b.ReportMetric(float64(c.Microseconds())/1000, "cold-ms"+unit)
		b.ReportMetric(float64(r.Microseconds())/1000, "restore-ms"+unit)
		b.ReportMetric(float64(rc.Microseconds())/1000, "restore-call-ms"+unit)
		b.ReportMetric(float64(fe.Microseconds())/1000, "first-exit-ms"+unit)
		b.ReportMetric(float64(r)/float64(c), "ratio"+unit)
		pr, pc, pf := med(s.prepared), med(s.pcall), med(s.pfirst)
		b.Logf("%d MiB into a prepared VM: restore %v (vmm.Restore %v, first exit %v): ratio restore/cold %.2f, against a restore that makes its VM %.2f",
			mib, pr, pc, pf, float64(pr)/float64(c), float64(pr)/float64(r))
		b.ReportMetric(float64(pr.Microseconds())/1000, "prepared-restore-ms"+unit)
		b.ReportMetric(float64(pc.Microseconds())/1000, "prepared-restore-call-ms"+unit)
		b.ReportMetric(float64(pf.Microseconds())/1000, "prepared-first-exit-ms"+unit)
	}
	// The goal: flat in memory size.
	small, big := all[0], all[1]
	ratio := func(f func(*sized) []time.Duration) float64 {
		return float64(med(f(big))) / float64(med(f(small)))
	}
	rr := ratio(func(s *sized) []time.Duration { return s.restore })
	rc := ratio(func(s *sized) []time.Duration { return s.call })
	rf := ratio(func(s *sized) []time.Duration { return s.first })
	b.Logf("%d MiB against %d MiB: restore %.2f, vmm.Restore %.2f, first exit %.2f (goal <= 1.20); cold boot %.2f",
		sizes[1], sizes[0], rr, rc, rf, ratio(func(s *sized) []time.Duration { return s.cold }))
	pr := ratio(func(s *sized) []time.Duration { return s.prepared })
	pc := ratio(func(s *sized) []time.Duration { return s.pcall })
	b.Logf("into prepared VMs, %d MiB against %d MiB: restore %.2f, vmm.Restore %.2f", sizes[1], sizes[0], pr, pc)
	b.ReportMetric(pr, "prepared-restore-size-ratio")
	b.ReportMetric(pc, "prepared-restore-call-size-ratio")
	b.ReportMetric(rr, "restore-size-ratio")
	b.ReportMetric(rc, "restore-call-size-ratio")
	b.ReportMetric(rf, "first-exit-size-ratio")
}

// BenchmarkSnapshotPause: the time a snapshot keeps the guest paused, for
// the first (full) snapshot of a VM with 1 GiB of memory of which 64 MiB
// in use, and for incremental ones after the guest wrote 1 MiB, in the
// same run; with what each stored and where the pause went
// (SnapshotResult.Phases).
func BenchmarkSnapshotPause(b *testing.B) {
	needKVM(b)
	img, err := vmm.OpenImage(image(b, "./testdata/snapdirty"))
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	store := filepath.Join(b.TempDir(), "vm.store")
	vm, pw, rw := newWaitingVM(b, img, store, 1<<30)
	defer vm.Close()
	done := make(chan error, 1)
	go func() { _, err := vm.Run(); done <- err }()
	defer func() { vm.Stop(); pw.Close(); <-done }()
	select {
	case <-rw.ready:
	case err := <-done:
		b.Fatalf("the guest ended before it was ready: %v\n%s", err, rw.buf.String())
	case <-time.After(300 * time.Second):
		b.Fatal("the guest was not ready within 300s")
	}
	full, err := vm.Snapshot("full", false)
	if err != nil {
		b.Fatal(err)
	}
	if full.Meta.Parent != "" {
		b.Fatalf("the first snapshot is incremental to %q", full.Meta.Parent)
	}
	const runs = 7
	var pauses, commits []time.Duration
	var stored, dirty int64
	phases := map[string][]time.Duration{}
	var order []string
	for i := 1; i <= runs; i++ {
		want := "dirtied " + strconv.Itoa(i) + " "
		pw.Write([]byte("x\n"))
		deadline := time.Now().Add(120 * time.Second)
		for {
			rw.mu.Lock()
			ok := strings.Contains(rw.buf.String(), want)
			rw.mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no %q within 120s:\n%s", want, rw.buf.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		res, err := vm.Snapshot("inc"+strconv.Itoa(i), false)
		if err != nil {
			b.Fatal(err)
		}
		if res.Meta.Parent == "" {
			b.Fatalf("snapshot %d is not incremental", i)
		}
		pauses = append(pauses, res.Pause)
		commits = append(commits, res.Commit)
		for _, p := range res.Phases {
			if _, ok := phases[p.Name]; !ok {
				order = append(order, p.Name)
			}
			phases[p.Name] = append(phases[p.Name], p.D)
		}
		stored += res.Meta.MemStored
		dirty += res.Meta.MemDirty
	}
	inc := median(pauses)
	b.Logf("full snapshot: paused %v, %.1f MiB stored of 1 GiB; incremental after 1 MiB written: paused %v (median of %d), %.2f MiB stored, %.2f MiB dirty (mean); pause ratio incremental/full %.3f",
		full.Pause, float64(full.Meta.MemStored)/(1<<20), inc, runs, float64(stored)/runs/(1<<20), float64(dirty)/runs/(1<<20), float64(inc)/float64(full.Pause))
	var fl, il []string
	for _, p := range full.Phases {
		fl = append(fl, fmt.Sprintf("%s %v", p.Name, p.D))
	}
	for _, n := range order {
		il = append(il, fmt.Sprintf("%s %v", n, median(phases[n])))
	}
	b.Logf("where the pause went: full: %s; incremental (medians): %s; then the commit, the guest running: full %v, incremental %v (median)", strings.Join(fl, ", "), strings.Join(il, ", "), full.Commit, median(commits))
	b.ReportMetric(float64(median(commits).Microseconds())/1000, "inc-commit-after-ms")
	b.ReportMetric(float64(full.Pause.Microseconds())/1000, "full-pause-ms")
	b.ReportMetric(float64(inc.Microseconds())/1000, "inc-pause-ms")
	b.ReportMetric(float64(inc)/float64(full.Pause), "pause-ratio")
	b.ReportMetric(float64(stored)/runs/(1<<20), "inc-stored-MiB")
}
