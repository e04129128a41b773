// Package vmm is Amber's virtual machine monitor as a library: it creates a
// KVM microVM with one vCPU, loads an Amber image by direct boot, serves
// the guest's hypercalls (console, idle, exit, crash) and its devices, and
// reports how the guest ended.
package vmm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Config describes one VM.
type Config struct {
	Image   *Image
	Memory  uint64   // bytes of guest RAM; 0 means DefaultMemory
	Cmdline []string // extra kernel options (amber.KEY=VALUE)
	Env     []string // the program's environment, KEY=VALUE
	Args    []string // the program's arguments after os.Args[0]
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	// SyscallTrap selects how a stray SYSCALL instruction reaches the
	// kernel: "lstar" (EFER.SCE set; lands at LSTAR at CPL3 on
	// shadow-paging hosts), "ud" (EFER.SCE clear; the kernel serves #UD),
	// or "" to choose: lstar where the host is kvm_pvm, ud elsewhere.
	SyscallTrap string
	// Timeout stops a guest that runs longer, with a report; 0: none.
	Timeout time.Duration
	// Boot selects the boot path: "direct" (or ""; the VMM sets up long
	// mode and starts the kernel's 64-bit entry at CPL3) or "pvh" (the
	// vCPU starts at the image's 32-bit PVH entry, as under other VMMs;
	// vmm/pvh.go).
	Boot string
	// DebugDevice adds the MMIO test device of boot/debugdev.go (doorbell
	// through ioeventfd, interrupt through irqfd); direct boot only.
	DebugDevice bool
	// Disks are virtio-blk devices, /dev/vda first (vmm/virtioblk.go);
	// New takes their backends: they are closed with the VM, or by New
	// when it fails.
	Disks []Disk
	// Prefault populates the boot working set (vmm/prefault.go) before
	// the guest starts, instead of leaving it to be backed by the host on
	// the guest's first touches, page by page.
	Prefault bool
	// Net is a virtio-net device (vmm/virtionet.go), the transport after
	// the disks; nil: none. Its backend is closed with the VM, or by New
	// when it fails.
	Net *Net
}

// Disk is one virtio-blk device: its backend, and whether the guest may
// only read it.
type Disk struct {
	Backend  BlockBackend
	ReadOnly bool
}

// DefaultMemory is the guest RAM size when Config.Memory is 0.
const DefaultMemory = 128 << 20

// Exit statuses of a VM that did not exit by itself.
const (
	ExitCrash       = boot.ExitCrash // guest crash: triple fault, unhandled exception, kernel panic, timeout
	ExitInterrupted = 130            // stopped by Ctrl-C (128 + SIGINT)
)

// VM is a running or runnable microVM.
type VM struct {
	cfg     Config
	img     *Image
	kvmFd   uintptr
	vmFd    uintptr
	vcpu    *VCPU
	mem     *GuestMemory
	pioBus  Bus // port I/O devices
	mmioBus Bus // MMIO devices
	irqs    msiRoutes

	bootTSC  uint64
	bootTime time.Time
	tscHz    uint64

	input          *inputPump
	stdout, stderr *hostOut
	halt           *halter // set when the VM is to stop: blocked console writes give up

	lstarMode bool           // EFER.SCE set: a stray SYSCALL lands at LSTAR
	closers   []func() error // devices' and interrupts' resources

	stop      atomic.Bool
	closeMu   sync.Mutex // Stop, Signal and the timeout against Close
	closed    bool
	timedOut  atomic.Bool // Config.Timeout has passed
	done      bool        // the guest has ended (exit, crash, debug exit)
	status    int         // its status, when done
	marks     []Mark      // the first maxMarks
	lostMarks int         // marks after those
	hcallsBy  [16]int     // hypercalls by number
	hcBlock   []byte      // the request block of the hypercall being served
	guestSnap GuestSnapshot
	// snapParent is the snapshot this VM's memory was last saved to or
	// restored from: with the dirty log on, the next snapshot is
	// incremental to it (snapshot.go).
	snapParent string
	dirtyLog   bool
	// cowDirty: a restored VM before its first snapshot, whose writes
	// since the restore are its private pages (vmm/restoredirty.go).
	cowDirty bool

	tlbFlushes, releasedBytes uint64 // memory the guest gave back (vmm/release.go)

	blks     []*blkDevice // the disks' devices (virtioblk.go), for DiskRequests
	ctl      vcpuCtl      // requests to the vCPU thread: pause, snapshot (vmm/snapshot.go)
	restored bool         // made by Restore: Run continues the guest instead of booting it
	phases   *phaseClock  // the restore's phases (vmm/restoretime.go); nil for New's VMs
	runStart time.Time    // when Run started
}

// Mark is a point in guest time reported by kernel.Mark.
type Mark struct {
	ID        uint64
	SinceBoot time.Duration // guest TSC converted, relative to the vCPU's first run
}

// ErrNoKVM is wrapped by errors about a missing or inaccessible /dev/kvm.
var ErrNoKVM = errors.New("KVM is not available")

// kvmDevice is the KVM device node (a variable for tests).
var kvmDevice = "/dev/kvm"

// openKVM opens /dev/kvm with an error that says what to do.
func openKVM() (uintptr, error) {
	fd, err := unix.Open(kvmDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return 0, fmt.Errorf("%s does not exist: %w (is this a Linux host with KVM enabled? load kvm_intel or kvm_amd, or enable nested virtualization)", kvmDevice, ErrNoKVM)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return 0, fmt.Errorf("no permission to open %s: %w (add your user to the group that owns it, e.g. `sudo usermod -aG kvm $USER`, then log in again)", kvmDevice, ErrNoKVM)
	case err != nil:
		return 0, fmt.Errorf("opening %s: %v: %w", kvmDevice, err, ErrNoKVM)
	}
	v, err := kvm.GetAPIVersion(uintptr(fd))
	if err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("%s is not a KVM device (%v): %w", kvmDevice, err, ErrNoKVM)
	}
	if v != 12 {
		unix.Close(fd)
		return 0, fmt.Errorf("%s speaks KVM API version %d, want 12: %w", kvmDevice, v, ErrNoKVM)
	}
	return uintptr(fd), nil
}

// KVMAvailable reports whether /dev/kvm can be used, and why not.
func KVMAvailable() error {
	fd, err := openKVM()
	if err != nil {
		return err
	}
	unix.Close(int(fd))
	return nil
}

// New creates the VM and loads the image; Run starts it.
func New(cfg Config) (_ *VM, err error) {
	owned := false // the disks' backends are in vm.closers
	defer func() {
		if err != nil && !owned {
			for _, d := range cfg.Disks {
				if d.Backend != nil {
					d.Backend.Close()
				}
			}
			if cfg.Net != nil && cfg.Net.Backend != nil {
				cfg.Net.Backend.Close()
			}
		}
	}()
	if cfg.Image == nil {
		return nil, errors.New("vmm: no image")
	}
	if cfg.Memory == 0 {
		cfg.Memory = DefaultMemory
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	img := cfg.Image
	switch {
	case cfg.Memory%(2<<20) != 0:
		return nil, fmt.Errorf("memory size %d is not a multiple of 2 MiB", cfg.Memory)
	case cfg.Memory > boot.MaxMemory:
		return nil, fmt.Errorf("memory size %d MiB is above the maximum of %d MiB", cfg.Memory>>20, boot.MaxMemory>>20)
	case cfg.Memory < img.MinMemory():
		return nil, fmt.Errorf("%s needs at least %d MiB of memory, but the VM has %d MiB (raise --mem)", img.Path, img.MinMemory()>>20, cfg.Memory>>20)
	}
	for i, d := range cfg.Disks {
		if d.Backend == nil {
			return nil, fmt.Errorf("disk %d has no backend", i)
		}
	}
	if cfg.Net != nil && cfg.Net.Backend == nil {
		return nil, errors.New("the network device has no backend")
	}
	vm := &VM{cfg: cfg, img: img}
	for _, d := range cfg.Disks {
		vm.closers = append(vm.closers, d.Backend.Close)
	}
	if cfg.Net != nil {
		vm.closers = append(vm.closers, cfg.Net.Backend.Close)
	}
	owned = true
	defer func() {
		if err != nil {
			vm.Close()
		}
	}()
	if vm.kvmFd, err = openKVM(); err != nil {
		return nil, err
	}
	if vm.vmFd, err = kvm.CreateVM(vm.kvmFd); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	if vm.mem, err = newGuestMemory(cfg.Memory); err != nil {
		return nil, err
	}
	// Fill guest memory before KVM knows about it: first touches of pages
	// in a registered slot cost several times more on this host.
	if err = img.load(vm.mem); err != nil {
		return nil, err
	}
	dropImagePages(img)
	pvhEntry := uint32(0)
	switch cfg.Boot {
	case "", "direct":
		if err = writeTables(vm.mem); err != nil {
			return nil, err
		}
	case "pvh": // the 32-bit entry writes the tables itself
		if pvhEntry, err = img.PVHEntry(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown boot path %q (want direct or pvh)", cfg.Boot)
	}
	if cfg.Prefault {
		img.populate(vm.mem)
	}
	if err = vm.setMemoryRegion(0); err != nil {
		return nil, err
	}
	vm.irqs.vmFd = vm.vmFd
	if vm.vcpu, vm.tscHz, err = irqchipAndVCPU(vm.kvmFd, vm.vmFd); err != nil {
		return nil, err
	}

	lstar := uint64(0)
	switch cfg.SyscallTrap {
	case "lstar":
		lstar = img.lstar
		if lstar == 0 {
			return nil, fmt.Errorf("%s has no kernel.lstarEntry symbol; cannot use --syscall-trap=lstar", img.Path)
		}
		// With hardware virtualization (kvm_amd, kvm_intel) SYSCALL enters
		// LSTAR at CPL0, where the kernel's entry cannot run: the guest
		// would triple-fault. Only kvm_pvm delivers it at CPL3.
		if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
			return nil, errors.New("--syscall-trap=lstar needs a kvm_pvm host (SYSCALL enters LSTAR at CPL0 with hardware virtualization); use ud")
		}
	case "ud":
	case "":
		if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
			lstar = img.lstar
		}
	default:
		return nil, fmt.Errorf("unknown syscall trap mode %q (want lstar or ud)", cfg.SyscallTrap)
	}
	vm.lstarMode = lstar != 0
	if pvhEntry != 0 {
		err = vm.setupVCPUPVH(pvhEntry, lstar, img.lstar)
	} else {
		err = vm.setupVCPU(img.Entry, lstar, img.lstar)
	}
	if err != nil {
		return nil, err
	}
	if err = vm.initConsole(); err != nil {
		return nil, err
	}
	if err = vm.addDevices(); err != nil {
		return nil, err
	}
	for i, d := range cfg.Disks {
		if err = vm.addDisk(i, d); err != nil {
			return nil, err
		}
	}
	if cfg.Net != nil {
		if err = vm.addNet(len(cfg.Disks), *cfg.Net); err != nil {
			return nil, err
		}
	}
	if cfg.DebugDevice {
		if pvhEntry != 0 {
			return nil, errors.New("the debug device needs the direct boot (its page is mapped in the boot page tables)")
		}
		if err = vm.addDebugDevice(); err != nil {
			return nil, err
		}
	}
	return vm, nil
}

// setMemoryRegion registers guest RAM as slot 0 with flags.
func (vm *VM) setMemoryRegion(flags uint32) error { return setMemorySlot(vm.vmFd, vm.mem, flags) }

// setMemorySlot registers mem as the VM's slot 0, at guest address 0.
func setMemorySlot(vmFd uintptr, mem *GuestMemory, flags uint32) error {
	region := &kvm.UserspaceMemoryRegion{Slot: 0, Flags: flags, GuestPhysAddr: 0, MemorySize: mem.Size(), UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem.mem[0])))}
	if err := kvm.SetUserMemoryRegion(vmFd, region); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	return nil
}

// LogDirtyPages makes KVM record the guest's writes to its RAM, for
// DirtyPages: the base of incremental snapshots.
func (vm *VM) LogDirtyPages() error { return vm.setMemoryRegion(memLogDirtyPages) }

// DirtyPages returns a bitmap of the 4 KiB pages of RAM the guest wrote
// since LogDirtyPages or the last call (bit i of word i/64: page i), and
// starts a new log. Writes by the VMM itself are not in it.
func (vm *VM) DirtyPages() ([]uint64, error) {
	pages := vm.mem.Size() / boot.PageSize
	bitmap := make([]uint64, (pages+63)/64)
	if err := getDirtyLog(vm.vmFd, 0, bitmap); err != nil {
		return nil, fmt.Errorf("KVM_GET_DIRTY_LOG: %w", err)
	}
	return bitmap, nil
}

// DeviceStates returns the state of every device that has one, by name,
// as plain Go values (Snapshotter).
func (vm *VM) DeviceStates() map[string]any {
	m := map[string]any{}
	for _, b := range []*Bus{&vm.pioBus, &vm.mmioBus} {
		for _, r := range b.ranges {
			if s, ok := r.dev.(Snapshotter); ok {
				m[b.name+"/"+r.name] = s.SaveState()
			}
		}
	}
	return m
}

// initConsole sets up the console streams and input.
func (vm *VM) initConsole() (err error) {
	if vm.halt, err = newHalter(); err != nil {
		return err
	}
	vm.stdout, vm.stderr = newHostOut(vm.cfg.Stdout), newHostOut(vm.cfg.Stderr)
	vm.input = newInputPump(vm.cfg.Stdin)
	return nil
}

// addDevices builds the devices, each handed what it uses, and places
// them on the buses.
func (vm *VM) addDevices() error {
	vm.pioBus.name, vm.mmioBus.name = "pio", "mmio"
	for _, d := range []struct {
		name       string
		bus        *Bus
		base, size uint64
		dev        Device
	}{
		{"hypercall", &vm.pioBus, boot.HypercallPort, 4, hypercallPort{vm}},
		{"uart", &vm.pioBus, com1, com1Size, newUART(consoleStream{vm.stdout, vm.halt}, vm.input)},
		{"debug-exit", &vm.pioBus, debugExitPort, debugExitSize, debugExit{vm.end}},
	} {
		if err := d.bus.Add(d.name, d.base, d.size, d.dev); err != nil {
			return err
		}
	}
	return nil
}

// end records that the guest has finished with status; the vCPU loop
// returns it after the exit being served.
func (vm *VM) end(status int) {
	if !vm.done {
		vm.done, vm.status = true, status
	}
}

// writeStartInfo writes hvm_start_info, Amber's extension, the memory map
// and the command line, just before the first run (it carries the TSC).
func (vm *VM) writeStartInfo(lstar bool) error {
	le := binary.LittleEndian
	area, err := vm.mem.Slice(boot.StartInfoPA, boot.StartInfoMax)
	if err != nil {
		return err
	}
	opts := append([]string{"amber.argv0=" + progName(vm.img.Path)}, vm.cfg.Cmdline...)
	cmd := boot.Cmdline(opts, vm.cfg.Env, vm.cfg.Args)
	if len(cmd)+1 > boot.MaxCmdline {
		return fmt.Errorf("command line of %d bytes (arguments and environment) exceeds %d bytes", len(cmd), boot.MaxCmdline-1)
	}
	copy(area[boot.CmdlineOffset:], cmd)

	si := boot.StartInfo{
		Magic: boot.StartInfoMagic, Version: 1,
		CmdlinePaddr:  boot.StartInfoPA + boot.CmdlineOffset,
		MemmapPaddr:   boot.StartInfoPA + boot.MemmapOffset,
		MemmapEntries: 2,
	}
	put := func(off int, v any) {
		b := make([]byte, 0, 128)
		b, _ = binary.Append(b, le, v)
		copy(area[off:], b)
	}
	put(0, si)
	put(boot.MemmapOffset, []boot.MemmapEntry{
		{Addr: 0, Size: boot.ImageBase, Type: boot.MemmapTypeReserv},
		{Addr: boot.ImageBase, Size: vm.mem.Size() - boot.ImageBase, Type: boot.MemmapTypeRAM},
	})
	ai := boot.AmberInfo{
		Magic: boot.AmberInfoMagic, ABIVersion: boot.ABIVersion,
		Flags: boot.AmberFlagHypercalls,
		TSCHz: vm.tscHz, BootTSC: vm.bootTSC, BootUnixNs: uint64(vm.bootTime.UnixNano()),
		PML4: boot.PML4PA, RAMEnd: vm.mem.Size(),
	}
	if lstar {
		ai.Flags |= boot.AmberFlagLSTAR
	}
	var seed [32]byte
	rand.Read(seed[:])
	for i := range ai.Seed {
		ai.Seed[i] = le.Uint64(seed[i*8:])
	}
	put(boot.AmberInfoOffset, ai)
	return nil
}

// progName is os.Args[0] for the guest: the image's file name without
// ".img".
func progName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".img")
}

// maxMarks bounds the marks a VM keeps: they measure boot, and a guest
// that marks in a loop must not grow the VMM.
const maxMarks = 1024

// dropImagePages unmaps from this process the pages of the image's
// snapshot that parsing and loading it touched (headers, notes, the copied
// data segment: 0.5-1.5 MiB of resident memory with the kernel's
// fault-around). The mapping is read-only and private, so nothing is lost:
// a later read (a crash report's symbols, another VM from the same Image)
// maps the pages again from the snapshot.
func dropImagePages(img *Image) {
	if img.mapped && len(img.raw) > 0 {
		unix.Madvise(img.raw, unix.MADV_DONTNEED)
	}
}

// GuestRAM is where the guest's RAM is mapped in this process (its start
// and length), for telling its pages from the VMM's own in /proc/self/smaps.
func (vm *VM) GuestRAM() (uintptr, uint64) {
	if len(vm.mem.mem) == 0 {
		return 0, 0
	}
	return uintptr(unsafe.Pointer(&vm.mem.mem[0])), uint64(len(vm.mem.mem))
}

// Marks returns the first marks the guest reported (at most 1024).
func (vm *VM) Marks() []Mark { return vm.marks }

// DroppedMarks is the number of marks reported after the first 1024, which
// were not kept.
func (vm *VM) DroppedMarks() int { return vm.lostMarks }

// Exits counts the VM's exits to this process by kind (KVM exit reasons,
// and hypercalls as "hcN").
func (vm *VM) Exits() map[string]int {
	m := map[string]int{}
	for r, n := range vm.vcpu.exits {
		if n > 0 {
			m[kvm.ExitType(r).String()] = n
		}
	}
	for nr, n := range vm.hcallsBy {
		if n > 0 {
			m[fmt.Sprint("hc", nr)] = n
		}
	}
	return m
}

// Stop asks a running VM to stop; Run then returns ExitInterrupted, even
// while a console write waits for a full pipe.
func (vm *VM) Stop() {
	vm.stop.Store(true)
	vm.wake()
}

// wake makes the vCPU thread look at the stop and timeout requests: it
// ends a blocked console write and makes KVM_RUN return. Stop and Signal
// may race with Close (a signal as vmm exits): after Close they do
// nothing.
func (vm *VM) wake() {
	vm.closeMu.Lock()
	defer vm.closeMu.Unlock()
	if vm.closed {
		return
	}
	vm.halt.halt()
	vm.kick()
}

// Stopped reports whether Stop was called.
func (vm *VM) Stopped() bool { return vm.stop.Load() }

// Signal posts a signal to the guest process (Ctrl-C: SIGINT). The kernel
// takes it at its next timer tick, when it wakes from idle, or when it
// waits for a console write (which the signal interrupts). It reports
// false if the guest cannot receive signals from the VMM.
func (vm *VM) Signal(sig syscall.Signal) bool {
	vm.closeMu.Lock()
	defer vm.closeMu.Unlock()
	if sig <= 0 || sig > 64 || vm.mem == nil || vm.closed {
		return false
	}
	off := uint64(boot.StartInfoPA + boot.AmberInfoOffset + unsafe.Offsetof(boot.AmberInfo{}.HostSignals))
	b, err := vm.mem.Slice(off, 8)
	if err != nil {
		return false
	}
	atomic.OrUint64((*uint64)(unsafe.Pointer(&b[0])), 1<<(sig-1))
	vm.kick()
	if vm.halt != nil {
		vm.halt.interrupt()
	}
	return true
}

// kick makes KVM_RUN return soon and ends an idle wait.
func (vm *VM) kick() {
	vm.vcpu.kick()
	vm.input.wakeIdle()
}

// Close releases the VM's resources.
func (vm *VM) Close() error {
	vm.closeMu.Lock()
	vm.closed = true
	vm.closeMu.Unlock()
	var errs []error
	for i := len(vm.closers) - 1; i >= 0; i-- {
		errs = append(errs, vm.closers[i]())
	}
	vm.closers = nil
	if vm.vcpu != nil {
		errs = append(errs, vm.vcpu.close())
	}
	for _, fd := range []*uintptr{&vm.vmFd, &vm.kvmFd} {
		if *fd != 0 {
			errs = append(errs, unix.Close(int(*fd)))
			*fd = 0
		}
	}
	if vm.mem != nil {
		if vm.img != nil {
			vm.img.forget(vm.mem)
		}
		errs = append(errs, vm.mem.close())
	}
	if vm.input != nil {
		vm.input.close()
	}
	for _, o := range []*hostOut{vm.stdout, vm.stderr} {
		if o != nil {
			o.close()
		}
	}
	if vm.halt != nil {
		vm.halt.close()
	}
	return errors.Join(errs...)
}

// Run boots the guest and returns its exit status when it ends. A guest
// crash is reported on Stderr and gives ExitCrash; err is for failures of
// the VMM itself.
func (vm *VM) Run() (status int, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer vm.endRequests()
	vm.runStart = time.Now()

	if vm.restored {
		vm.startRestored()
	} else {
		if vm.bootTSC, err = vm.guestTSC(); err != nil {
			return 0, err
		}
		vm.bootTime = time.Now()
		if err := vm.writeStartInfo(vm.lstarMode); err != nil {
			return 0, err
		}
	}
	if vm.cfg.Timeout > 0 {
		t := time.AfterFunc(vm.cfg.Timeout, func() {
			vm.timedOut.Store(true)
			vm.wake()
		})
		defer t.Stop()
	}
	return vm.loop()
}

// loop runs the vCPU until the guest ends or the VM is told to stop.
func (vm *VM) loop() (int, error) { return vm.vcpu.loop(vm) }

// stopping, ended, pio, mmio and fail are the VM's side of the vCPU loop
// (exitHandler).

func (vm *VM) stopping() (int, bool) {
	vm.serveRequests()
	if vm.stop.Load() {
		return ExitInterrupted, true
	}
	if vm.timedOut.Load() {
		return vm.crashReport(nil, fmt.Sprintf("guest did not finish within %v (--timeout); stopped", vm.cfg.Timeout)), true
	}
	return 0, false
}

func (vm *VM) ended() (int, bool) { return vm.status, vm.done }

func (vm *VM) fail(reason string) int { return vm.crashReport(nil, reason) }

// pio serves a port-I/O exit through the port bus; reads of ports nobody
// claims give all ones, as on real hardware.
func (vm *VM) pio(port uint16, out bool, size int, data []byte) {
	vm.pioBus.access(uint64(port), max(size, 1), data, out)
}

// mmio serves an MMIO exit through the MMIO bus.
func (vm *VM) mmio(addr uint64, out bool, data []byte) {
	vm.mmioBus.access(addr, len(data), data, out)
}

func (vm *VM) tscToDuration(ticks uint64) time.Duration {
	return time.Duration(float64(ticks) * 1e9 / float64(vm.tscHz))
}

// idle waits until the guest deadline (ns since boot; 0: none), input, or
// a stop request.
func (vm *VM) idle(deadlineNs int64) int {
	var timer <-chan time.Time
	if deadlineNs > 0 {
		d := time.Until(vm.bootTime.Add(time.Duration(deadlineNs)))
		if d <= 0 {
			return 0
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	return vm.input.wait(timer, &vm.stop)
}

// maxInput bounds the host input the VMM holds for the guest: the pump
// stops reading while this much is unread, and the host's pipe or file
// keeps the rest, so a guest that never reads costs no memory.
const maxInput = 64 << 10

// inputPump moves host input to the guest: a goroutine reads Stdin into a
// buffer of at most maxInput bytes that the console hypercalls drain.
type inputPump struct {
	mu         sync.Mutex
	data       []byte // unread input is data[head:tail]
	head, tail int
	eof        bool
	ready      chan struct{} // signalled when data or EOF arrives, or on a kick
	space      chan struct{} // signalled when the guest takes input
	closed     chan struct{} // the VM is gone: the pump stops
	closeOnce  sync.Once
}

func newInputPump(r io.Reader) *inputPump {
	p := &inputPump{ready: make(chan struct{}, 1), space: make(chan struct{}, 1), closed: make(chan struct{})}
	if r == nil {
		p.eof = true
		return p
	}
	p.data = make([]byte, maxInput)
	go p.pump(r)
	return p
}

func (p *inputPump) pump(r io.Reader) {
	stage := make([]byte, maxInput)
	for {
		p.mu.Lock()
		free := len(p.data) - (p.tail - p.head)
		p.mu.Unlock()
		if free == 0 {
			select {
			case <-p.space:
				continue
			case <-p.closed:
				return
			}
		}
		n, err := r.Read(stage[:free])
		p.mu.Lock()
		if p.tail+n > len(p.data) {
			p.tail = copy(p.data, p.data[p.head:p.tail])
			p.head = 0
		}
		p.tail += copy(p.data[p.tail:], stage[:n])
		if err != nil {
			p.eof = true
		}
		p.mu.Unlock()
		p.wakeIdle()
		if err != nil {
			return
		}
	}
}

// close stops the pump once it has to wait for the guest (a Read of the
// host input that blocks cannot be interrupted).
func (p *inputPump) close() {
	p.closeOnce.Do(func() { close(p.closed) })
}

func (p *inputPump) wakeIdle() {
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

// read moves buffered input into b: n > 0 bytes, 0 none yet, -1 end of input.
func (p *inputPump) read(b []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head == p.tail {
		if p.eof {
			return -1
		}
		return 0
	}
	n := copy(b, p.data[p.head:p.tail])
	p.head += n
	if p.head == p.tail {
		p.head, p.tail = 0, 0
	}
	select {
	case p.space <- struct{}{}:
	default:
	}
	return n
}

func (p *inputPump) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.head < p.tail || p.eof
}

func (p *inputPump) wait(timer <-chan time.Time, stop *atomic.Bool) int {
	for {
		if p.pending() {
			return boot.IdleInput
		}
		if stop.Load() {
			return boot.IdleInterrupt
		}
		select {
		case <-timer:
			return 0
		case <-p.ready:
			if !p.pending() && !stop.Load() {
				return 0 // a kick: the guest has something to look at
			}
		}
	}
}
