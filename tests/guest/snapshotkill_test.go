package guest

import (
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/snapshot"
)

// kill -9 of the VMM while it takes a snapshot, at 20 random points:
// the store stays consistent (fsck), every earlier snapshot restores and
// continues from its count, and the snapshot being taken is either whole
// (it restores too) or absent. Each round restores the newest snapshot
// that survived, waits for its next count, asks for a snapshot and kills
// the VMM a random delay later: before, during or after the commit (the
// snapshot package's crash tests cut at every write and flush; these are
// the whole VMM's). The delays are drawn from [0, T], T the time a
// vmm snapshot of a restored VM took, not killed, in the same run
// (snapshot c, the first round's start): kills fall before, during and
// after the commit (with [0, 2T], 17 of 20 snapshots survived in a
// nested run: most of T is the client's start and the reply). Surviving snapshots form a chain of incremental snapshots of
// restored VMs, each the next round's start; at the end the first
// snapshot still restores.
func TestSnapshotKill(t *testing.T) {
	needKVM(t)
	dir, store, aCount := countingSnapshot(t, 3, "a")
	sock := filepath.Join(dir, "vm.sock")

	// Snapshot c of a restored VM, not killed: it restores and
	// continues, and its time sets the kill delays'.
	rv := startVM(t, "restore", "--api", sock, store+"@a")
	first := rv.waitCount(t, aCount+1)
	if len(first) == 0 || first[0].n != aCount+1 {
		t.Fatalf("restore of a: %+v, want count %d first\n%s", first, aCount+1, rv.stderr.String())
	}
	t0 := time.Now()
	r := run(t, "snapshot", "--api", sock, "--stop", "c")
	took := time.Since(t0)
	if r.code != 0 {
		t.Fatalf("snapshot c of a restored VM: exit %d\n%s", r.code, r.stderr)
	}
	// The VM may stop before it prints another count: the last count is
	// then the one waited for.
	rest, _ := rv.rest(t)
	cs := append(first, rest...)
	cCount := cs[len(cs)-1].n
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("snapshot a at count %d; snapshot c of a restored VM at count %d took %v (%s); kill delays from seed %d", aCount, cCount, took, strings.TrimSpace(r.stdout), seed)
	const rounds = 20
	// base is the snapshot the next round restores; its restore's first
	// count lies in [lo, hi] (exactly known for c, bounded for a
	// snapshot whose VMM was killed: after the count the round waited
	// for, and at most one past the last count printed before the kill).
	base, lo, hi := "c", cCount+1, cCount+1
	survived := 0
	for i := range rounds {
		rv := startVM(t, "restore", "--api", sock, store+"@"+base)
		c := rv.waitCount(t, lo)
		if len(c) == 0 || c[0].n < lo || c[0].n > hi {
			t.Fatalf("round %d: restore of %s: counts %+v, want the first in [%d, %d]\n%s", i, base, c, lo, hi, rv.stderr.String())
		}
		start, printed := c[0].n, c[len(c)-1].n
		name := fmt.Sprintf("b%d", i)
		snap := exec.Command(vmmBin, "snapshot", "--api", sock, name)
		if err := snap.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int63n(int64(took) + 1))
		time.Sleep(delay)
		rv.cmd.Process.Kill() // SIGKILL
		rv.cmd.Wait()
		snap.Wait()
		for _, l := range rv.waitCount(t, 1<<62) { // the lines printed before the kill
			printed = max(printed, l.n)
		}
		// In this process: two vmm commands a round cost more than
		// the rest of it on nested KVM.
		names, problems := storeSnapshots(t, store)
		if problems != "" {
			t.Fatalf("round %d (killed %v into snapshot %s):\n%s", i, delay, name, problems)
		}
		if !names["a"] || !names[base] {
			t.Fatalf("round %d: snapshot a or %s gone: %v", i, base, names)
		}
		present := names[name]
		t.Logf("round %d: restored %s at count %d, killed %v into snapshot %s (last count printed %d); %s present: %v", i, base, start, delay, name, printed, name, present)
		if present {
			// Taken after the guest printed start, before the kill.
			survived++
			base, lo, hi = name, start+1, printed+1
		} else {
			lo, hi = start, start // base again: the same first count
		}
	}
	t.Logf("%d of %d snapshots whole, the others absent", survived, rounds)
	// The first snapshot still restores.
	rv = startVM(t, "restore", "--api", sock, store+"@a")
	if c := rv.waitCount(t, aCount+1); len(c) == 0 || c[0].n != aCount+1 {
		t.Errorf("restore of a after %d rounds: %+v, want count %d first\n%s", rounds, c, aCount+1, rv.stderr.String())
	}
	run(t, "stop", "--api", sock)
	rv.rest(t)
	if _, problems := storeSnapshots(t, store); problems != "" {
		t.Errorf("at the end:\n%s", problems)
	}
}

// storeSnapshots checks store as vmm store fsck does and lists its
// snapshots: their names, and the problems fsck found or snapshots that
// cannot be read ("" when none).
func storeSnapshots(t *testing.T, store string) (map[string]bool, string) {
	t.Helper()
	dev, err := filedev.Open(store, filedev.Options{ReadOnly: true, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if rep := objstore.Fsck(dev); !rep.OK() {
		return nil, rep.String()
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	names := map[string]bool{}
	var broken []string
	err = s.View(func(tx *objstore.Tx) error {
		l, err := snapshot.List(tx)
		for _, e := range l {
			names[e.Name] = true
			if e.Err != nil {
				broken = append(broken, fmt.Sprintf("snapshot %s cannot be read: %v", e.Name, e.Err))
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names, strings.Join(broken, "\n")
}
