package main

// The snapshot commands and the control API's client commands:
// vmm snapshot, snapshots, restore, ps, pause, resume, stop
// (docs/snapshots.md, docs/api.md).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/snapshot"
	"github.com/amberos/amber/vmm"
	"github.com/amberos/amber/vmm/api"
)

// vmControl adapts a VM to the control API.
type vmControl struct{ vm *vmm.VM }

func (c vmControl) Pause() error  { return c.vm.Pause() }
func (c vmControl) Resume() error { return c.vm.Resume() }
func (c vmControl) Stop() error   { c.vm.Stop(); return nil }
func (c vmControl) Metrics() any  { return c.vm.Metrics() }

func (c vmControl) Snapshot(name string, stop bool) (any, error) {
	r, err := c.vm.Snapshot(name, stop)
	if err != nil {
		return nil, err
	}
	return snapshotReply{Meta: r.Meta, PauseNs: r.Pause.Nanoseconds(), CommitNs: r.Commit.Nanoseconds()}, nil
}

// snapshotReply is POST /snapshot's reply.
type snapshotReply struct {
	Meta    snapshot.Meta `json:"snapshot"`
	PauseNs int64         `json:"pauseNs"`
	// CommitNs: the commit after the guest resumed (0 when the
	// snapshot stopped the VM: committed within the pause).
	CommitNs int64 `json:"commitNs"`
}

// serveAPI starts the control API of vm at path; the returned function
// stops it.
func serveAPI(vm *vmm.VM, path string, info api.Info) (func(), error) {
	info.PID = os.Getpid()
	info.Started = time.Now()
	s, err := api.Listen(path, vmControl{vm}, info)
	if err != nil {
		return nil, err
	}
	return func() { s.Close() }, nil
}

const snapshotUsage = `Usage: vmm snapshot --api SOCKET [--stop] NAME

Takes a whole-VM snapshot NAME of the VM serving its control API at SOCKET
(vmm run --api): vCPU, devices, memory and disk, in one transaction in the
VM's store (its --disk). The guest pauses while the snapshot is written
into the store's transaction and continues; the commit (the store's
flushes) follows while it runs, and this command returns once it is
committed, printing both times. With --stop the VM stops once the
snapshot is committed. vmm restore STORE@NAME brings it back.

Flags:
`

func cmdSnapshot(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("api", "", "the VM's control API `socket`")
	stop := fs.Bool("stop", false, "stop the VM after the snapshot")
	fs.Usage = func() { fmt.Fprint(stderr, snapshotUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return flagStatus(err)
	}
	if *sock == "" || fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	name := fs.Arg(0)
	if err := snapshot.CheckName(name); err != nil {
		fmt.Fprintf(stderr, "vmm snapshot: %v\n", err)
		return exitUsage
	}
	var r snapshotReply
	if err := api.NewClient(*sock).Do("POST", "/snapshot", api.SnapshotRequest{Name: name, Stop: *stop}, &r); err != nil {
		fmt.Fprintf(stderr, "vmm snapshot: %v\n", err)
		return 1
	}
	m := r.Meta
	inc := ""
	if m.Parent != "" {
		inc = fmt.Sprintf(", incremental to %s: %s dirty", m.Parent, mib(m.MemDirty))
	}
	committed := ""
	if r.CommitNs > 0 {
		committed = fmt.Sprintf(", committed %v after it resumed", time.Duration(r.CommitNs).Round(time.Microsecond))
	}
	fmt.Fprintf(stdout, "snapshot %s: memory %s (%s stored%s), disk %s, guest paused %v%s\n",
		m.Name, mib(m.MemBytes), mib(m.MemStored), inc, mib(m.DiskBytes), time.Duration(r.PauseNs).Round(time.Microsecond), committed)
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// cmdControl is vmm pause, resume and stop.
func cmdControl(verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("api", "", "the VM's control API `socket`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vmm %s --api SOCKET\n\n%s the VM serving its control API at SOCKET (vmm run --api).\n\nFlags:\n", verb, map[string]string{
			"pause": "Pauses the vCPU of", "resume": "Resumes", "stop": "Stops",
		}[verb])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagStatus(err)
	}
	if *sock == "" || fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	if err := api.NewClient(*sock).Do("POST", "/"+verb, nil, nil); err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", verb, err)
		return 1
	}
	return 0
}

func cmdPs(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		dir, _ := api.RunDir()
		fmt.Fprintf(stderr, "Usage: vmm ps\n\nLists the running VMs that serve a control API (vmm run --api), from %s.\n", dir)
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			return 0
		}
		return exitUsage
	}
	vms, err := api.Running()
	if err != nil {
		fmt.Fprintf(stderr, "vmm ps: %v\n", err)
		return 1
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PID\tUP\tIMAGE\tDISK\tAPI\tPORTS")
	for _, v := range vms {
		img := v.Image
		if v.From != "" {
			img += " (restored from " + v.From + ")"
		}
		ports := strings.Join(v.Forwards, ",")
		if ports == "" {
			ports = "-"
		}
		fmt.Fprintf(w, "%d\t%v\t%s\t%s\t%s\t%s\n", v.PID, time.Since(v.Started).Round(time.Second), img, v.Disk, v.API, ports)
	}
	w.Flush()
	return 0
}

func cmdSnapshots(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "rm" {
		return cmdSnapshotsRm(args[1:], stdout, stderr)
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, "Usage: vmm snapshots STORE\n       vmm snapshots rm STORE@NAME...\n\nLists the whole-VM snapshots in STORE: name, parent, time taken, guest memory,\nthe non-zero memory stored, and disk size. vmm snapshots rm deletes snapshots\n(vmm snapshots rm -h).\n")
		if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return 0
		}
		return exitUsage
	}
	dev, err := filedev.Open(args[0], filedev.Options{ReadOnly: true})
	if err != nil {
		fmt.Fprintf(stderr, "vmm snapshots: %v\n", err)
		return 1
	}
	defer dev.Close()
	s, err := objstore.Open(dev)
	if err != nil {
		fmt.Fprintf(stderr, "vmm snapshots: %s: %v\n", args[0], err)
		return 1
	}
	defer s.Close()
	var list []snapshot.Listed
	if err := s.View(func(tx *objstore.Tx) error { list, err = snapshot.List(tx); return err }); err != nil {
		fmt.Fprintf(stderr, "vmm snapshots: %s: %v\n", args[0], err)
		return 1
	}
	names := map[string]bool{}
	for _, l := range list {
		names[l.Name] = true
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tPARENT\tCREATED\tMEMORY\tSTORED\tDISK")
	for _, l := range list {
		if l.Err != nil {
			fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t(unusable: %v)\n", l.Name, l.Err)
			continue
		}
		m := l.Meta
		parent := m.Parent
		if parent == "" {
			parent = "-"
		} else if !names[parent] {
			parent += " (deleted)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, parent, m.Created.Local().Format(time.DateTime), mib(m.MemBytes), mib(m.MemStored), mib(m.DiskBytes))
	}
	w.Flush()
	return 0
}

const snapshotsRmUsage = `Usage: vmm snapshots rm STORE@NAME...

Deletes snapshots: the names given of one store go in one transaction
(all of them or, on an error, none; a kill -9 at any instant leaves all
or none). A name that is not a snapshot of its store is an error naming
it. Deleting a snapshot loses nothing of the others: a snapshot taken
incremental to it keeps all its memory (its pages are shared, counted by
reference, not copied), and its space is freed as far as no other
snapshot, and no disk, shares it.

A store a VM runs on (vmm run --disk, vmm restore) is refused, and so is
a store with clones running (vmm restore --clone). A snapshot a clone
store shares with its base (made before the clone) cannot be deleted
through the clone: it is the base's, which the clone only reads.
Deleting in a store that has clones, like any change to it, makes those
clones unusable.
`

// cmdSnapshotsRm is vmm snapshots rm.
func cmdSnapshotsRm(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, snapshotsRmUsage)
		if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return 0
		}
		return exitUsage
	}
	var stores []string
	names := map[string][]string{}
	for _, a := range args {
		store, name, ok := splitStoreName(a)
		if !ok {
			fmt.Fprintf(stderr, "vmm snapshots rm: %q: want STORE@NAME (vmm snapshots STORE lists the names)\n", a)
			return exitUsage
		}
		if err := snapshot.CheckName(name); err != nil {
			fmt.Fprintf(stderr, "vmm snapshots rm: %v\n", err)
			return exitUsage
		}
		if names[store] == nil {
			stores = append(stores, store)
		}
		names[store] = append(names[store], name)
	}
	for _, store := range stores {
		orphans, err := removeSnapshots(store, names[store])
		if err != nil {
			fmt.Fprintf(stderr, "vmm snapshots rm: %v\n", err)
			return 1
		}
		for _, n := range names[store] {
			fmt.Fprintf(stdout, "deleted %s@%s\n", store, n)
		}
		for _, o := range orphans {
			fmt.Fprintf(stdout, "%s@%s was incremental to a deleted snapshot: it keeps all its memory\n", store, o)
		}
	}
	return 0
}

// removeSnapshots deletes snapshots of store in one transaction.
func removeSnapshots(store string, names []string) (orphans []string, err error) {
	dev, err := filedev.Open(store, filedev.Options{})
	if err != nil {
		var le *filedev.LockedError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("%s is in use by pid %d (a VM running on it, or a clone of it running): stop it first", store, le.PID)
		}
		return nil, err
	}
	defer dev.Close()
	if base := dev.Base(); base != "" {
		shared, err := baseSnapshots(base, names)
		if err != nil {
			return nil, fmt.Errorf("%s: its base %s: %w", store, base, err)
		}
		if len(shared) > 0 {
			return nil, fmt.Errorf("%s@%s: the clone store %s shares this snapshot with its base %s, which it only reads: it cannot be deleted through the clone (deleting it in %s would make the clone unusable)", store, shared[0], store, base, base)
		}
	}
	s, err := objstore.Open(dev)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", store, err)
	}
	defer s.Close()
	err = s.Update(func(tx *objstore.Tx) (err error) {
		orphans, err = snapshot.Remove(tx, names)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w (nothing deleted)", store, err)
	}
	return orphans, nil
}

// baseSnapshots returns which of names are snapshots in base (read-only,
// shared with the clones that have it open).
func baseSnapshots(base string, names []string) ([]string, error) {
	dev, err := filedev.Open(base, filedev.Options{ReadOnly: true, Shared: true})
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	s, err := objstore.Open(dev)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var in []string
	err = s.View(func(tx *objstore.Tx) error {
		for _, n := range names {
			ok, err := snapshot.Exists(tx, n)
			if err != nil {
				return err
			}
			if ok {
				in = append(in, n)
			}
		}
		return nil
	})
	return in, err
}

// splitStoreName splits STORE@NAME at its last '@' (a path may hold one).
func splitStoreName(arg string) (store, name string, ok bool) {
	i := strings.LastIndexByte(arg, '@')
	if i <= 0 {
		return "", "", false
	}
	return arg[:i], arg[i+1:], true
}

const restoreUsage = `Usage: vmm restore [flags] STORE@NAME

Brings back the VM of snapshot NAME in STORE and continues it: memory is
mapped from the store (read only as the guest touches it), vCPU and devices
are as at the snapshot, and the store's disk becomes the snapshot's disk
(writes made to the disk since the snapshot are dropped, as when loading a
qcow2 snapshot; the snapshot itself is kept). The guest's monotonic clock
continues from the snapshot; its wall clock is the host's; its random
source is reseeded. Exit statuses are those of vmm run.

With --clone CLONE, STORE is only read: CLONE is made a new clone store of
it (a small file naming STORE), which gets the VM's disk writes and its
snapshots; memory is mapped from STORE, so clones of one snapshot share
its pages. Any number of clones of one store run at once; STORE cannot be
opened for writing meanwhile, and a clone refuses to open once STORE has
changed. vmm restore CLONE@NAME restores a clone's snapshot.

The network: a restore starts a backend like the snapshot's (the user
network with its host forwards, or the tap device) with the snapshot's
MAC. A clone gets a fresh MAC and its forwards listen on host ports the
kernel chooses, printed as "vmm: hostfwd tcp:127.0.0.1:PORT-:GUESTPORT"
(the snapshot's ports are the original VM's). --net replaces the backend
(other forwards, host port 0 for one the kernel chooses, another tap);
its MAC, unless mac= gives one, is the snapshot's, or a fresh one for a
clone. The guest learns a new MAC at once (it announces it and renews a
DHCP lease); TCP connections open at the snapshot are lost.

Flags:
`

func cmdRestore(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	imgPath := fs.String("image", "", "the `image` the snapshot's VM booted (default: the path the snapshot records)")
	sock := fs.String("api", "", "serve the VM's control API on this unix `socket` (docs/api.md)")
	timeout := fs.Duration("timeout", 0, "stop the guest with a report after this `duration` (0: never)")
	clone := fs.String("clone", "", "make `CLONE` a new clone store of STORE and run the VM on it (STORE is only read)")
	bootTime := fs.Bool("boot-time", false, "print on stderr, when the VM ends, the restore's phases (opening the store, reading the snapshot, decoding its state, creating the VM, mapping memory, ..., the guest's first exit) and their times")
	netFlag := fs.String("net", "", "replace the snapshot's network backend, as vmm run --net: `user[,hostfwd=...][,mac=MAC]` or tap=NAME[,mac=MAC] (default: the snapshot's; for a clone its forwards on host ports the kernel chooses)")
	fs.Usage = func() { fmt.Fprint(stderr, restoreUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return flagStatus(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	store, name, ok := splitStoreName(fs.Arg(0))
	if !ok {
		fmt.Fprintf(stderr, "vmm restore: %q: want STORE@NAME (vmm snapshots STORE lists the names)\n", fs.Arg(0))
		return exitUsage
	}
	if err := snapshot.CheckName(name); err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitUsage
	}
	if _, err := os.Stat(store); err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitNotStart
	}
	if *clone != "" {
		if _, err := os.Lstat(*clone); err == nil {
			fmt.Fprintf(stderr, "vmm restore: --clone %s: the file exists (a clone store is made new; vmm restore %s@NAME restores one)\n", *clone, *clone)
			return exitUsage
		}
	}
	var netSpec *vmm.NetSpec
	if *netFlag != "" {
		ns, err := vmm.ParseNetSpec(*netFlag)
		if err != nil {
			fmt.Fprintf(stderr, "vmm restore: --net: %v\n", err)
			return exitUsage
		}
		netSpec = &ns
	}
	if err := vmm.KVMAvailable(); err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitNotStart
	}
	rc := vmm.RestoreConfig{Store: store, Snapshot: name, Clone: *clone, NetSpec: netSpec, Stdin: stdin, Stdout: stdout, Stderr: stderr, Timeout: *timeout}
	if *imgPath != "" {
		img, err := vmm.OpenImage(*imgPath)
		if err != nil {
			fmt.Fprintf(stderr, "vmm restore: %v\n", err)
			return exitNotStart
		}
		defer img.Close()
		rc.Image = img
	}
	vm, err := vmm.Restore(rc)
	if err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitNotStart
	}
	defer vm.Close()
	if ns := vm.NetSpec(); ns != nil && (*clone != "" || netSpec != nil) {
		// Not the snapshot's host ports: say which.
		printForwards(stderr, ns.Forwards)
	}
	if *sock != "" {
		disk := store
		if *clone != "" {
			disk = *clone
		}
		stopAPI, err := serveAPI(vm, *sock, api.Info{Image: vm.ImagePath(), Disk: disk, From: fs.Arg(0), Forwards: forwardStrings(vm.NetSpec())})
		if err != nil {
			fmt.Fprintf(stderr, "vmm restore: --api: %v\n", err)
			return exitNotStart
		}
		defer stopAPI()
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	pipes := make(chan os.Signal, 1) // EPIPE goes to the guest, as in vmm run
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)
	go func() {
		interrupts := 0
		for s := range sigs {
			if s == os.Interrupt && interrupts == 0 && vm.Signal(syscall.SIGINT) {
				interrupts++
				continue
			}
			vm.Stop()
		}
	}()
	status, err := vm.Run()
	stderr = vm.Stderr()
	if err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitNotStart
	}
	if *bootTime {
		var total time.Duration
		for _, p := range vm.RestorePhases() {
			total += p.D
			fmt.Fprintf(stderr, "vmm: restore %-14s %10v  (%v)\n", p.Name, p.D.Round(time.Microsecond), total.Round(time.Microsecond))
		}
	}
	if status == vmm.ExitInterrupted && vm.Stopped() {
		fmt.Fprintln(stderr, "vmm: guest stopped")
	}
	return status
}
