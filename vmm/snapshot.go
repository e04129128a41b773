package vmm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/objstore"
	snapfmt "github.com/amberos/amber/snapshot"
	"github.com/bobuhiro11/gokvm/kvm"
)

// Whole-VM snapshots (package snapshot has their layout in the store).
//
// A snapshot is taken on the vCPU thread, between two KVM_RUNs: a request
// posted with onVCPU makes the loop leave KVM_RUN (a kick), complete the
// exit it served last (KVM_RUN with immediate_exit, as the KVM API asks
// before saving state: a port-I/O IN's data reaches RAX only then), and
// run the request. The virtio transports' locks are taken for the whole
// snapshot: a request the device goroutine was serving finishes first,
// and none starts, so memory, the rings and the disk agree. Chains the
// driver made available but the device had not taken stay in the ring;
// after a restore the device is kicked and takes them.
//
// The snapshot is one objstore transaction on the store the VM's disk
// lives in: vCPU and device state, the non-zero pages of RAM, and an O(1)
// clone of the disk object. The disk's write cache (its open transaction)
// is committed first, as a flush, so a failed snapshot loses nothing.

// vcpuCtl carries requests to the vCPU thread.
type vcpuCtl struct {
	mu      sync.Mutex
	reqs    []func()
	pending atomic.Bool
	resume  chan struct{} // a paused vCPU waits for it; nil when not paused
	exited  chan struct{} // closed when Run returns
	notify  chan struct{} // a request was posted (wakes a paused vCPU)
	once    sync.Once
}

func (c *vcpuCtl) init() {
	c.once.Do(func() {
		c.exited = make(chan struct{})
		c.notify = make(chan struct{}, 1)
	})
}

// ErrNotRunning is returned for a request to a VM whose guest has ended.
var ErrNotRunning = errors.New("the VM is not running")

// onVCPU runs fn on the vCPU thread with the vCPU out of KVM_RUN and its
// last exit completed, and returns fn's error.
func (vm *VM) onVCPU(fn func() error) error {
	vm.ctl.init()
	done := make(chan error, 1)
	vm.ctl.mu.Lock()
	vm.ctl.reqs = append(vm.ctl.reqs, func() { done <- fn() })
	vm.ctl.pending.Store(true)
	vm.ctl.mu.Unlock()
	select {
	case vm.ctl.notify <- struct{}{}:
	default:
	}
	vm.closeMu.Lock()
	if !vm.closed {
		vm.kick()
	}
	vm.closeMu.Unlock()
	select {
	case err := <-done:
		return err
	case <-vm.ctl.exited:
		select {
		case err := <-done:
			return err
		default:
			return ErrNotRunning
		}
	}
}

// serveRequests runs the posted requests; the vCPU loop calls it before
// entering the guest.
func (vm *VM) serveRequests() {
	if !vm.ctl.pending.Load() {
		return
	}
	vm.ctl.mu.Lock()
	reqs := vm.ctl.reqs
	vm.ctl.reqs = nil
	vm.ctl.pending.Store(false)
	vm.ctl.mu.Unlock()
	if len(reqs) == 0 {
		return
	}
	vm.completeExit()
	for _, r := range reqs {
		r()
	}
}

// completeExit lets KVM finish the exit served last (KVM_RUN with
// immediate_exit set returns EINTR without running the guest).
func (vm *VM) completeExit() {
	c := vm.vcpu
	if c.run == nil || c.enter != nil {
		return
	}
	c.run.ImmediateExit = 1
	kvmRun(c.fd)
	c.run.ImmediateExit = 0
}

// endRequests is called when Run returns: waiting requests fail.
func (vm *VM) endRequests() {
	vm.ctl.init()
	select {
	case <-vm.ctl.exited:
	default:
		close(vm.ctl.exited)
	}
}

// Pause stops the vCPU until Resume (or Stop). Device goroutines finish
// the requests they have; the guest makes no new ones.
func (vm *VM) Pause() error {
	started := make(chan struct{})
	vm.ctl.mu.Lock()
	if vm.ctl.resume != nil {
		vm.ctl.mu.Unlock()
		return nil // already paused
	}
	resume := make(chan struct{})
	vm.ctl.resume = resume
	vm.ctl.mu.Unlock()
	vm.ctl.init()
	go vm.onVCPU(func() error {
		close(started)
		tick := time.NewTicker(20 * time.Millisecond) // for Stop and the timeout
		defer tick.Stop()
		for {
			select {
			case <-resume:
				return nil
			case <-vm.ctl.notify:
				vm.serveRequests() // a snapshot of the paused VM
			case <-tick.C:
			}
			if vm.stop.Load() || vm.timedOut.Load() {
				return nil
			}
		}
	})
	select {
	case <-started:
		return nil
	case <-vm.exitedChan():
		vm.ctl.mu.Lock()
		vm.ctl.resume = nil
		vm.ctl.mu.Unlock()
		return ErrNotRunning
	}
}

func (vm *VM) exitedChan() chan struct{} {
	vm.ctl.init()
	return vm.ctl.exited
}

// Resume lets a paused vCPU run again.
func (vm *VM) Resume() error {
	vm.ctl.mu.Lock()
	defer vm.ctl.mu.Unlock()
	if vm.ctl.resume == nil {
		return errors.New("the VM is not paused")
	}
	close(vm.ctl.resume)
	vm.ctl.resume = nil
	return nil
}

// Paused reports whether the VM is paused.
func (vm *VM) Paused() bool {
	vm.ctl.mu.Lock()
	defer vm.ctl.mu.Unlock()
	return vm.ctl.resume != nil
}

// SnapshotResult describes a snapshot taken.
type SnapshotResult struct {
	Meta  snapfmt.Meta
	Pause time.Duration // the vCPU's time out of the guest for it
	// Phases is where Pause went, in order: committing the disk's cached
	// writes, the vCPU's and devices' state, finding the pages to save,
	// writing them and the state into the store, and (for a snapshot
	// that stops the VM or that the guest asked for) the commit.
	Phases []Phase
	// Commit is how long the commit took after the guest resumed (a
	// snapshot that lets the guest run on): the snapshot was durable
	// Pause + Commit after it began.
	Commit time.Duration
}

// Snapshot saves the whole VM as snapshot name in the store its disk is
// in, and lets the guest continue (unless stop: then the VM stops, as
// with Stop, once the snapshot is committed). It returns once the
// snapshot is committed. The guest is paused only until the snapshot's
// pages and state are in the store's transaction: the commit (its
// flushes, ~2 ms on a disk here) runs while the guest runs on, holding
// the disk, whose requests wait for it. A commit that fails leaves the
// store as it was and makes the VM's next snapshot full.
func (vm *VM) Snapshot(name string, stop bool) (*SnapshotResult, error) {
	if err := snapfmt.CheckName(name); err != nil {
		return nil, err
	}
	var res *SnapshotResult
	var commit <-chan error
	err := vm.onVCPU(func() error {
		clock := newPhaseClock()
		m, c, err := vm.snapshotNow(name, clock, !stop)
		if err != nil {
			return err
		}
		res = &SnapshotResult{Meta: *m, Pause: time.Since(clock.start), Phases: clock.phases}
		commit = c
		if stop {
			vm.stop.Store(true)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", name, err)
	}
	if commit != nil {
		resumed := time.Now()
		if err := <-commit; err != nil {
			return nil, fmt.Errorf("snapshot %q: committing: %w", name, err)
		}
		res.Commit = time.Since(resumed)
	}
	return res, nil
}

// GuestSnapshot is called with each snapshot the guest asked for
// (guest.Snapshot), on the vCPU thread, after it is committed or failed;
// nil: none. tools/vmm reports them.
type GuestSnapshot func(res *SnapshotResult, err error)

// OnGuestSnapshot sets the function told of snapshots the guest takes.
func (vm *VM) OnGuestSnapshot(fn GuestSnapshot) { vm.guestSnap = fn }

// Errors the guest's snapshot call returns (boot.HCSnapshot).
const (
	errInval      = -22 // EINVAL
	errExist      = -17 // EEXIST
	errIO         = -5  // EIO
	errNotSupport = -95 // EOPNOTSUPP
)

// hcSnapshot serves guest.Snapshot. The snapshot cannot be taken inside
// the exit (KVM has not finished the OUT: RIP still points at it), so it
// is a request the loop serves before it enters the guest again, after
// completing the exit. The block's Ret is 1 while the snapshot is taken,
// so that a VM restored from it returns from the call with 1; this VM
// then gets 0 or the error.
func hcSnapshot(vm *VM, h *boot.Hypercall) (int64, bool) {
	b, err := vm.mem.Slice(h.A0, h.A1)
	if err != nil || h.A1 > 128 {
		return errInval, true
	}
	name := string(b)
	if err := snapfmt.CheckName(name); err != nil {
		return errInval, true
	}
	if _, err := vm.snapshotDisk(); err != nil {
		fmt.Fprintf(vm.Stderr(), "vmm: the guest asked for snapshot %q: %v\n", name, err)
		return errNotSupport, true
	}
	ret := vm.hcBlock[40:48]
	vm.atNextEntry(func() {
		binary.LittleEndian.PutUint64(ret, 1)
		// The call's result is the commit's: committed in place.
		clock := newPhaseClock()
		m, _, err := vm.snapshotNow(name, clock, false)
		var res *SnapshotResult
		code := int64(0)
		switch {
		case err == nil:
			res = &SnapshotResult{Meta: *m, Pause: time.Since(clock.start), Phases: clock.phases}
		case errors.Is(err, snapfmt.ErrExists):
			code = errExist
		default:
			code = errIO
			fmt.Fprintf(vm.Stderr(), "vmm: the guest asked for snapshot %q: %v\n", name, err)
		}
		binary.LittleEndian.PutUint64(ret, uint64(code))
		if vm.guestSnap != nil {
			vm.guestSnap(res, err)
		}
	})
	return 0, false
}

// atNextEntry runs fn on the vCPU thread before it enters the guest
// again, after KVM completed the exit being served; it is called on the
// vCPU thread (no kick needed).
func (vm *VM) atNextEntry(fn func()) {
	vm.ctl.mu.Lock()
	vm.ctl.reqs = append(vm.ctl.reqs, fn)
	vm.ctl.pending.Store(true)
	vm.ctl.mu.Unlock()
}

// vmState is the VM's own part of the devices object: what a restore
// needs besides the devices' registers.
type vmState struct {
	LSTAR   bool                       `json:"lstar"`
	Devices map[string]json.RawMessage `json:"devices"`
	Net     *netRecord                 `json:"net,omitempty"`
}

// netRecord is the network device's backend as a snapshot records it: a
// restore starts a new one (a new vmm-net process with the same
// forwards, or the same tap device). The guest's open TCP connections do
// not survive: the user network's connection state is not saved.
type netRecord struct {
	MAC      string    `json:"mac"`
	User     bool      `json:"user,omitempty"`
	Forwards []HostFwd `json:"forwards,omitempty"`
	Tap      string    `json:"tap,omitempty"`
	Unknown  bool      `json:"unknown,omitempty"` // a backend given without a Spec
}

// netRecordOf describes the VM's network device for a snapshot.
func (vm *VM) netRecordOf() *netRecord {
	n := vm.cfg.Net
	if n == nil {
		return nil
	}
	r := &netRecord{Unknown: n.Spec == nil}
	for _, t := range vm.transports() {
		if d, ok := t.dev.(*netDevice); ok {
			r.MAC = net.HardwareAddr(d.cfg[0:6]).String()
		}
	}
	if n.Spec != nil {
		r.User, r.Forwards, r.Tap = n.Spec.User, n.Spec.Forwards, n.Spec.Tap
	}
	return r
}

// snapshotDisk returns the VM's store-backed disk: a snapshot needs one,
// and only one disk, to keep everything in one store.
func (vm *VM) snapshotDisk() (*storeDisk, error) {
	if len(vm.cfg.Disks) != 1 {
		return nil, fmt.Errorf("a snapshot needs the VM to have exactly one disk, a store (vmm run --disk vm.store); it has %d", len(vm.cfg.Disks))
	}
	sd, ok := vm.cfg.Disks[0].Backend.(*storeDisk)
	if !ok || sd.ro || vm.cfg.Disks[0].ReadOnly {
		return nil, errors.New("a snapshot needs the VM's disk to be a writable store (vmm store create --disk-size; vmm run --disk vm.store), where it is kept")
	}
	if vm.cfg.DebugDevice {
		return nil, errors.New("a VM with the debug device cannot be snapshotted")
	}
	return sd, nil
}

// transports returns the VM's virtio transports.
func (vm *VM) transports() []*virtioMMIO {
	var ts []*virtioMMIO
	for _, r := range vm.mmioBus.ranges {
		if t, ok := r.dev.(*virtioMMIO); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

// snapshotNow takes the snapshot; the vCPU is out of KVM_RUN.
//
// With later, the transaction's commit runs after snapshotNow returns
// (the guest may run on) and its result comes on commit; otherwise it is
// committed before.
func (vm *VM) snapshotNow(name string, clock *phaseClock, later bool) (_ *snapfmt.Meta, commit <-chan error, err error) {
	sd, err := vm.snapshotDisk()
	if err != nil {
		return nil, nil, err
	}
	ts := vm.transports()
	for _, t := range ts {
		t.lockAll()
	}
	defer func() {
		for _, t := range ts {
			t.unlockAll()
		}
	}()
	st, err := vm.vcpu.SaveState()
	if err != nil {
		return nil, nil, err
	}
	vcpuState := encodeVCPUState(st)
	clock.mark("vCPU state")
	vs := vmState{LSTAR: vm.lstarMode, Devices: map[string]json.RawMessage{}, Net: vm.netRecordOf()}
	for n, s := range vm.DeviceStates() {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding the state of %s: %w", n, err)
		}
		vs.Devices[n] = b
	}
	devJSON, err := json.Marshal(&vs)
	if err != nil {
		return nil, nil, err
	}
	clock.mark("device state")
	img, _ := filepath.Abs(vm.img.Path)
	var imgSize int64
	if fi, err := os.Stat(vm.img.Path); err == nil {
		imgSize = fi.Size()
	}
	c := &snapfmt.Contents{
		Meta:    snapfmt.Meta{Name: name, Image: img, ImageSize: imgSize, TSCHz: vm.tscHz, BootTSC: vm.bootTSC},
		VCPU:    vcpuState,
		Devices: devJSON,
		Memory:  vm.mem.mem,
		// The disk as the guest sees it, its cached writes included.
		DiskObject: StoreDiskObject,
	}
	// Incremental: the pages written since the parent, by the guest
	// (KVM's dirty log) or by the VMM (GuestMemory's). Taking the logs
	// clears them, so a failed snapshot makes the next one full.
	// A restored VM's first snapshot takes the guest's writes from the
	// pages it holds privately instead (vmm/restoredirty.go).
	parent := vm.snapParent
	vm.snapParent = ""
	cow := vm.cowDirty
	vm.cowDirty = false
	switch {
	case vm.dirtyLog || cow:
		var dirty []uint64
		if vm.dirtyLog {
			dirty, err = vm.DirtyPages()
		} else {
			dirty, err = vm.mem.privatePages()
		}
		if err != nil {
			parent = ""
		} else {
			vm.mem.takeWritten(dirty)
			c.Dirty = dirty
		}
	default:
		parent = ""
	}
	clock.mark("dirty pages")
	commit, err = sd.inSnapshotTx(clock, later, func(tx *objstore.Tx) error {
		if parent != "" {
			// A parent deleted since makes a full snapshot. A clone
			// store holds its base's snapshots: a clone's parent in
			// the base is found, and its blocks are shared, not
			// copied (the base is only read).
			if ok, err := snapfmt.Exists(tx, parent); err != nil {
				return err
			} else if ok {
				c.Meta.Parent = parent
			}
		}
		if c.Meta.Parent == "" {
			// A full snapshot skips the pages never touched (most of
			// a VM's RAM): anonymous memory the host never backed is
			// zero. Pages mapped from a file (the image's read-only
			// segments, a restored VM's snapshot) hold the file's data
			// even untouched: touchedPages counts them. A failure only
			// costs time: every page is read. An incremental snapshot
			// writes only the dirty pages and needs no scan (the
			// pagemap of 1 GiB was a quarter of its pause, nested).
			if touched, err := vm.mem.touchedPages(); err == nil {
				c.Touched = touched
			}
			clock.mark("touched pages")
		}
		err := snapfmt.Write(tx, c)
		clock.mark("write")
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	// Set before a later commit is done: the next snapshot waits for it
	// (the disk's lock), and a parent whose commit failed is not in the
	// store, which makes that snapshot full.
	vm.snapParent = name
	if !vm.dirtyLog {
		// From now on KVM logs the guest's writes (the first write to
		// each page after a snapshot costs a fault, and the guest's
		// memory is mapped with 4 KiB pages): the next snapshot writes
		// only what changed. The devices are stopped and the vCPU is
		// out, so no write falls between the snapshot and the log.
		if err := vm.LogDirtyPages(); err == nil {
			vm.mem.logWrites()
			vm.dirtyLog = true
		}
	}
	return &c.Meta, commit, nil
}

// inSnapshotTx commits the disk's cached writes, then runs fn in a new
// write transaction and commits it: the snapshot is in the store whole
// or not at all, and the disk's writes survive a failed snapshot. With
// later the commit runs in a goroutine that holds the disk's lock until
// it is done (the disk's requests wait for it, the guest need not), and
// its result comes on commit.
func (d *storeDisk) inSnapshotTx(clock *phaseClock, later bool, fn func(tx *objstore.Tx) error) (commit <-chan error, err error) {
	d.mu.Lock()
	locked := true
	defer func() {
		if locked {
			d.mu.Unlock()
		}
	}()
	if d.tx != nil {
		tx := d.tx
		d.tx, d.obj = nil, nil
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("committing the disk's writes: %w", err)
		}
		clock.mark("disk's writes committed")
	}
	tx, err := d.s.Begin(true)
	if err != nil {
		return nil, err
	}
	if err := fn(tx); err != nil {
		tx.Abort()
		return nil, err
	}
	if later {
		// The snapshot's pages and state were copied into the
		// transaction (objstore's writes copy or write through): what
		// the guest does from now on cannot change it.
		done := make(chan error, 1)
		locked = false
		go func() {
			err := tx.Commit()
			d.mu.Unlock()
			done <- err
		}()
		return done, nil
	}
	err = tx.Commit()
	clock.mark("commit")
	return nil, err
}

// RestoreConfig describes a VM brought back from a snapshot.
type RestoreConfig struct {
	Store    string // the store file holding the snapshot (and then the VM's disk)
	Snapshot string // its name
	// Clone, when set, is a new clone store to make of Store
	// (vmm/clone.go): the VM's disk and its snapshots go there, and Store
	// is only read.
	Clone string
	// Image is the image the snapshot's VM booted; nil opens the path
	// the snapshot records.
	Image   *Image
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Timeout time.Duration
	// Net, for a snapshot of a VM with a network device, is its backend;
	// nil starts one from NetSpec or, without one, like the snapshot
	// records (vmm/clonenet.go). Restore closes it.
	Net *Net
	// NetSpec, when set and Net is nil, is the backend to start in place
	// of the snapshot's (vmm restore --net).
	NetSpec *NetSpec
	// Prepared, when set, is the VM to restore into, made ahead with
	// Prepare for the snapshot's memory size (vmm/prepare.go). Restore
	// takes it, whether it succeeds or fails. Nil: Restore makes one
	// itself, beside reading the snapshot.
	Prepared *Prepared
}

// Restore creates a VM from a snapshot: guest memory is the snapshot's,
// mapped copy-on-write from the store file (read only as the guest
// touches it), vCPU and devices are as they were, and the store's disk
// object becomes the snapshot's disk (the disk's state since the snapshot
// is replaced, as loading a qcow2 snapshot does). Run continues the guest.
//
// The disk's replacement is the first write in the disk's cache (its open
// transaction), committed with the guest's first flush or when the VM
// ends: a restore costs no commit, and a VMM killed before either leaves
// the store as it was.
func Restore(rc RestoreConfig) (_ *VM, err error) {
	clock := newPhaseClock()
	// A failed restore releases the VM it was given or was making.
	prepared := rc.Prepared
	var making *preparing
	defer func() {
		switch {
		case err == nil:
		case prepared != nil:
			prepared.Close()
		case making != nil:
			making.discard()
		}
	}()
	clone := rc.Clone != ""
	dev, made, err := openRestoreStore(&rc)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && made != "" {
			os.Remove(made) // the clone this failed restore made
		}
	}()
	s, err := objstore.Open(dev)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", rc.Store, err)
	}
	owned := false
	tx, err := s.Begin(true)
	clock.mark("open store")
	if err != nil {
		s.Close()
		dev.Close()
		return nil, fmt.Errorf("%s: %w", rc.Store, err)
	}
	defer func() {
		if !owned {
			tx.Abort()
			s.Close()
			dev.Close()
		}
	}()
	var (
		meta      *snapfmt.Meta
		vcpuState []byte
		devJSON   []byte
		extents   []snapfmt.Extent
		diskBytes int64
	)
	// The VM (KVM's, its memory slot, irqchip and vCPU) depends only on
	// the memory's size: it is made beside reading the rest, unless the
	// caller made it ahead.
	var diskObj *objstore.Object
	err = func() error {
		if meta, err = snapfmt.ReadMeta(tx, rc.Snapshot); err != nil {
			return err
		}
		if meta.MemBytes <= 0 || meta.MemBytes%(2<<20) != 0 || uint64(meta.MemBytes) > boot.MaxMemory {
			return &snapfmt.FormatError{Name: rc.Snapshot, Format: meta.Format, Reason: fmt.Sprintf("guest memory of %d bytes: not a multiple of 2 MiB up to %d MiB", meta.MemBytes, boot.MaxMemory>>20)}
		}
		if prepared == nil {
			making = prepareAsync(uint64(meta.MemBytes))
		} else if prepared.Memory() != uint64(meta.MemBytes) {
			return fmt.Errorf("the prepared VM has %d MiB of memory, the snapshot %d MiB", prepared.Memory()>>20, meta.MemBytes>>20)
		}
		if vcpuState, devJSON, err = snapfmt.ReadState(tx, rc.Snapshot); err != nil {
			return err
		}
		if extents, err = snapfmt.MemoryExtents(tx, meta); err != nil {
			return err
		}
		snapDisk := snapfmt.Object(rc.Snapshot, snapfmt.ObjDisk)
		info, err := tx.Stat(snapDisk)
		if err != nil {
			return fmt.Errorf("snapshot %q has no disk: %w", rc.Snapshot, err)
		}
		diskBytes = info.Size
		if err := tx.Delete(StoreDiskObject); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return err
		}
		if err := tx.Clone(snapDisk, StoreDiskObject); err != nil {
			return err
		}
		diskObj, err = tx.Open(StoreDiskObject)
		return err
	}()
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", rc.Store, rc.Snapshot, err)
	}
	clock.mark("read state")
	img := rc.Image
	if img == nil {
		if img, err = OpenImage(meta.Image); err != nil {
			return nil, fmt.Errorf("snapshot %q was taken of %s: %w", rc.Snapshot, meta.Image, err)
		}
		defer func() {
			if !owned {
				img.Close()
			}
		}()
	}
	if fi, err := os.Stat(img.Path); err == nil && meta.ImageSize != 0 && fi.Size() != meta.ImageSize {
		return nil, fmt.Errorf("%s has %d bytes, but had %d when snapshot %q was taken: not the same image", img.Path, fi.Size(), meta.ImageSize, rc.Snapshot)
	}
	clock.mark("image")
	var vs vmState
	if err := json.Unmarshal(devJSON, &vs); err != nil {
		return nil, &snapfmt.FormatError{Name: rc.Snapshot, Format: meta.Format, Reason: fmt.Sprintf("device state: %v", err)}
	}
	var st VCPUState
	if err := decodeVCPUState(vcpuState, &st); err != nil {
		return nil, &snapfmt.FormatError{Name: rc.Snapshot, Format: meta.Format, Reason: fmt.Sprintf("vCPU state: %v", err)}
	}
	clock.mark("decode state")
	sd := &storeDisk{dev: dev, s: s, size: diskBytes, tx: tx, obj: diskObj}
	owned = true
	cfg := Config{
		Image: img, Memory: uint64(meta.MemBytes),
		Stdin: rc.Stdin, Stdout: rc.Stdout, Stderr: rc.Stderr, Timeout: rc.Timeout,
		Disks: []Disk{{Backend: sd}},
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	vm := &VM{cfg: cfg, img: img, restored: true, lstarMode: vs.LSTAR, phases: clock}
	vm.closers = append(vm.closers, sd.Close)
	if rc.Image == nil {
		vm.closers = append(vm.closers, img.Close)
	}
	defer func() {
		if err != nil {
			sd.dropCache() // a failed restore leaves the store's disk alone
			vm.Close()
		}
	}()
	clock.mark("new VM")
	if prepared == nil {
		if prepared, err = making.wait(); err != nil {
			making = nil
			return nil, err
		}
		making = nil
		// Made beside the phases above: how long each took, then how
		// long the restore waited for it.
		for _, ph := range prepared.phases {
			clock.phases = append(clock.phases, Phase{"beside: " + ph.Name, ph.D})
		}
		clock.mark("wait for the VM")
	}
	prepared.take(vm)
	prepared = nil
	for _, e := range extents {
		// A page mapped past the end of the file would be SIGBUS for the
		// VMM when the guest touches it.
		if e.FileOffset < 0 || e.FileOffset+e.Length > dev.Size() {
			return nil, fmt.Errorf("snapshot %q: memory extent [%#x, %#x) of the file is past its end (%#x)", rc.Snapshot, e.FileOffset, e.FileOffset+e.Length, dev.Size())
		}
		if err := mapExtent(vm.mem, dev, e); err != nil {
			return nil, fmt.Errorf("mapping snapshot memory [%#x, %#x): %w", e.GuestAddr, e.GuestAddr+e.Length, err)
		}
	}
	clock.mark(fmt.Sprintf("map memory (%d extents)", len(extents)))
	// The slot has no dirty log (vmm/restoredirty.go): the VM's first
	// snapshot is still incremental to the one it was restored from. The
	// VMM's own writes are logged from the start: a page the guest
	// released (MADV_DONTNEED) reads as the file's again, and the log
	// has it.
	vm.mem.logWrites()
	vm.cowDirty, vm.snapParent = true, rc.Snapshot
	if vm.tscHz != meta.TSCHz {
		return nil, fmt.Errorf("this host's TSC runs at %d kHz, the snapshot's at %d kHz: the guest's clocks would be wrong", vm.tscHz/1000, meta.TSCHz/1000)
	}
	if err = vm.initConsole(); err != nil {
		return nil, err
	}
	if err = vm.addDevices(); err != nil {
		return nil, err
	}
	if err = vm.addDisk(0, cfg.Disks[0]); err != nil {
		return nil, err
	}
	if vs.Net != nil {
		n, err := vs.Net.open(&rc, clone)
		if err != nil {
			return nil, fmt.Errorf("snapshot %q: %w", rc.Snapshot, err)
		}
		vm.closers = append(vm.closers, n.Backend.Close)
		vm.cfg.Net = n
		if err = vm.addNet(1, *n); err != nil {
			return nil, err
		}
	} else if rc.Net != nil || rc.NetSpec != nil {
		if rc.Net != nil {
			rc.Net.Backend.Close()
		}
		return nil, fmt.Errorf("snapshot %q is of a VM without a network device: it cannot be given one", rc.Snapshot)
	}
	if err = vm.restoreDevices(vs.Devices); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", rc.Snapshot, err)
	}
	clock.mark("devices")
	// The CPUID the boot gave: the host's supported set (KVM checks XCR0
	// and MSRs against it).
	if _, err = vm.cpuidAndSregs(); err != nil {
		return nil, err
	}
	if err = vm.vcpu.RestoreState(&st); err != nil {
		return nil, fmt.Errorf("snapshot %q: restoring the vCPU: %w", rc.Snapshot, err)
	}
	// The guest's monotonic clock continues from the snapshot's TSC (KVM
	// set it with the MSR); the wall clock is the host's: the kernel adds
	// BootUnixNs, which is moved so that boot + elapsed = now.
	tsc := meta.BootTSC
	for _, m := range st.MSRs {
		if m.Index == msrTSC {
			tsc = m.Data
		}
	}
	vm.bootTSC = meta.BootTSC
	vm.bootTime = time.Now().Add(-vm.tscToDuration(tsc - meta.BootTSC))
	if err = vm.writeRestoreInfo(); err != nil {
		return nil, err
	}
	clock.mark("vCPU state")
	return vm, nil
}

// restoreDevices loads each device's saved state, decoded into the type
// the device's own SaveState returns.
func (vm *VM) restoreDevices(states map[string]json.RawMessage) error {
	seen := map[string]bool{}
	for _, b := range []*Bus{&vm.pioBus, &vm.mmioBus} {
		for _, r := range b.ranges {
			s, ok := r.dev.(Snapshotter)
			if !ok {
				continue
			}
			name := b.name + "/" + r.name
			raw, ok := states[name]
			if !ok {
				return fmt.Errorf("no state for device %s", name)
			}
			seen[name] = true
			p := reflect.New(reflect.TypeOf(s.SaveState()))
			if err := json.Unmarshal(raw, p.Interface()); err != nil {
				return fmt.Errorf("device %s: %w", name, err)
			}
			if err := s.RestoreState(p.Elem().Interface()); err != nil {
				return fmt.Errorf("device %s: %w", name, err)
			}
		}
	}
	for name := range states {
		if !seen[name] {
			return fmt.Errorf("state for device %s, which this VM does not have", name)
		}
	}
	return nil
}

// writeRestoreInfo tells the restored guest's kernel the new wall-clock
// base and gives it a fresh random seed (clones must not share one),
// bumping AmberInfo.Restores so it notices.
func (vm *VM) writeRestoreInfo() error {
	area, err := vm.mem.Slice(boot.StartInfoPA+boot.AmberInfoOffset, uint64(unsafe.Sizeof(boot.AmberInfo{})))
	if err != nil {
		return err
	}
	ai := (*boot.AmberInfo)(unsafe.Pointer(&area[0]))
	if ai.Magic != boot.AmberInfoMagic {
		return errors.New("the snapshot's guest memory has no Amber boot information")
	}
	var seed [32]byte
	rand.Read(seed[:])
	for i := range ai.Seed {
		atomic.StoreUint64(&ai.Seed[i], binary.LittleEndian.Uint64(seed[i*8:]))
	}
	atomic.StoreUint64(&ai.BootUnixNs, uint64(vm.bootTime.UnixNano()))
	atomic.AddUint64(&ai.Restores, 1)
	return nil
}

// startRestored is Run's start for a restored VM: the devices take the
// requests the driver made available before the snapshot.
func (vm *VM) startRestored() {
	for _, t := range vm.transports() {
		if t.kick != nil {
			t.kick()
		}
		if _, ok := t.dev.(*netDevice); ok && t.live.Load() {
			// The MAC may be new (vmm/clonenet.go): a configuration
			// change wakes the guest to look.
			t.interrupt(vioIntConfig)
		}
	}
}

// virtioState is a transport's state: its registers and each queue's
// configuration and position.
type virtioState struct {
	Status, DevFeatSel, DrvFeatSel, QueueSel uint32
	DrvFeatures                              uint64
	Queues                                   []queueState
	IntStatus                                uint32
	Broken                                   string
}

// queueState is one queue of a transport.
type queueState struct {
	Size               uint16
	Desc, Avail, Used  uint64
	LastAvail, UsedIdx uint16
	Ready              bool
}

// SaveState is called with the device quiesced: the snapshot holds t.mu
// and every queue's lock (lockAll).
func (t *virtioMMIO) SaveState() any {
	s := virtioState{
		Status: t.status, DevFeatSel: t.devFeatSel, DrvFeatSel: t.drvFeatSel, QueueSel: t.queueSel,
		DrvFeatures: t.drvFeatures,
		IntStatus:   t.intStatus.Load(),
	}
	for i := 0; i < t.nq; i++ {
		q := &t.qs[i].q
		s.Queues = append(s.Queues, queueState{
			Size: q.size, Desc: q.desc, Avail: q.avail, Used: q.used,
			LastAvail: q.lastAvail, UsedIdx: q.usedIdx, Ready: t.qs[i].ready,
		})
	}
	t.errMu.Lock()
	if t.broken != nil {
		s.Broken = t.broken.Error()
	}
	t.errMu.Unlock()
	return s
}

// lockAll takes the transport's lock and then its queues' (the order the
// register writes use), so no request is half served while it is held.
func (t *virtioMMIO) lockAll() {
	t.mu.Lock()
	for i := 0; i < t.nq; i++ {
		t.qs[i].mu.Lock()
	}
}

func (t *virtioMMIO) unlockAll() {
	for i := t.nq - 1; i >= 0; i-- {
		t.qs[i].mu.Unlock()
	}
	t.mu.Unlock()
}

// RestoreState loads a state into a transport not yet running; a ready
// queue's layout is checked against guest memory as when the driver sets
// it up.
func (t *virtioMMIO) RestoreState(v any) error {
	s, ok := v.(virtioState)
	if !ok {
		return errStateType(t, v)
	}
	if len(s.Queues) != t.nq {
		return fmt.Errorf("the snapshot's device has %d queues, this one %d", len(s.Queues), t.nq)
	}
	for _, q := range s.Queues {
		if q.Ready {
			if err := checkQueueLayout(t.q.mem, q.Size, q.Desc, q.Avail, q.Used); err != nil {
				return err
			}
		}
	}
	t.lockAll()
	defer t.unlockAll()
	t.status, t.devFeatSel, t.drvFeatSel, t.queueSel = s.Status, s.DevFeatSel, s.DrvFeatSel, s.QueueSel
	t.drvFeatures = s.DrvFeatures
	for i, qs := range s.Queues {
		q := &t.qs[i].q
		q.size, q.desc, q.avail, q.used = qs.Size, qs.Desc, qs.Avail, qs.Used
		q.lastAvail, q.usedIdx = qs.LastAvail, qs.UsedIdx
		q.eventIdx = s.DrvFeatures&vioFEventIdx != 0
		t.qs[i].ready = qs.Ready
	}
	t.acked.Store(t.drvFeatures)
	t.live.Store(t.status&vioStatusDriverOK != 0 && t.status&vioStatusFeaturesOK != 0)
	t.intStatus.Store(s.IntStatus)
	t.errMu.Lock()
	t.broken = nil
	if s.Broken != "" {
		t.broken = errors.New(s.Broken)
	}
	t.errMu.Unlock()
	t.needsReset.Store(s.Broken != "")
	return nil
}

// Metrics is a running VM's counters, for the control API.
type Metrics struct {
	Uptime      time.Duration  `json:"uptimeNs"`
	Paused      bool           `json:"paused"`
	Exits       map[string]int `json:"exits"`
	ResidentRAM int64          `json:"residentBytes"` // the VMM process's resident memory (guest pages touched included)
	// GuestResident is the part of ResidentRAM that is guest RAM
	// (VM.GuestRSS): the pages the guest (or the VMM for it) wrote and
	// those mapped from a file. Pages only read map the host's shared
	// zero page, which RSS does not count.
	GuestResident uint64         `json:"guestResidentBytes"`
	Devices       map[string]any `json:"devices"`
}

// Metrics returns the VM's counters. It may be called while the VM runs:
// the exit counts are read without stopping the vCPU, so they are
// approximate.
func (vm *VM) Metrics() Metrics {
	m := Metrics{Paused: vm.Paused(), Exits: map[string]int{}, Devices: map[string]any{}}
	if !vm.bootTime.IsZero() {
		m.Uptime = time.Since(vm.bootTime)
	}
	for r := range vm.vcpu.exits {
		if n := atomic.LoadInt64((*int64)(unsafe.Pointer(&vm.vcpu.exits[r]))); n > 0 {
			m.Exits[kvm.ExitType(r).String()] = int(n)
		}
	}
	for nr := range vm.hcallsBy {
		if n := atomic.LoadInt64((*int64)(unsafe.Pointer(&vm.hcallsBy[nr]))); n > 0 {
			m.Exits[fmt.Sprint("hc", nr)] = int(n)
		}
	}
	if n, err := vm.GuestRSS(); err == nil {
		m.GuestResident = n
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, rss int64
		fmt.Sscan(string(b), &size, &rss)
		m.ResidentRAM = rss * int64(os.Getpagesize())
	}
	for _, r := range vm.mmioBus.ranges {
		if t, ok := r.dev.(*virtioMMIO); ok {
			d := map[string]uint64{"served": t.served.Load()}
			if b, ok := t.dev.(*blkDevice); ok {
				d["reads"], d["writes"], d["flushes"], d["errors"] = b.reads.Load(), b.writes.Load(), b.flushes.Load(), b.errors.Load()
			}
			if n, ok := t.dev.(*netDevice); ok {
				d["txFrames"], d["rxFrames"], d["txDropped"], d["rxDropped"] = n.txFrames.Load(), n.rxFrames.Load(), n.txDropped.Load(), n.rxDropped.Load()
				d["txChecksums"], d["rxWaits"] = n.txCsum.Load(), n.rxWaits.Load()
				d["features"] = t.negotiated()
			}
			m.Devices[r.name] = d
		}
	}
	return m
}

// ImagePath is the path of the image the VM runs.
func (vm *VM) ImagePath() string { return vm.img.Path }

// dropCache aborts the disk's uncommitted writes.
func (d *storeDisk) dropCache() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tx != nil {
		d.tx.Abort()
		d.tx, d.obj = nil, nil
	}
}
