// Command vmm is Amber's one user-facing tool: it builds Go programs into
// bootable images and runs them in KVM microVMs.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/tools/build"
	"github.com/amberos/amber/tools/qemu"
	"github.com/amberos/amber/tools/storecmd"
	"github.com/amberos/amber/vmm"
	"github.com/amberos/amber/vmm/api"
)

// procStart is when vmm started, for --boot-time's figures.
var procStart = time.Now()

// Exit statuses of vmm itself (a guest's own status passes through).
const (
	exitUsage       = 2
	exitNotStart    = 126 // the VM could not be started: bad image, no KVM, ...
	exitInterrupted = 130 // vmm build or vmm test's build stopped by Ctrl-C
)

const usage = `vmm builds Go programs into Amber unikernel images and runs them in KVM microVMs.

Usage:
  vmm build [-o IMAGE] PACKAGE        build a main package (import path, PATH@VERSION or
                                      directory, in this module or any other) into an image
  vmm run [flags] IMAGE [-- ARGS...]  boot an image; the program's exit status becomes vmm's
  vmm test [flags] PACKAGE [-- TESTFLAGS]
                                      build PACKAGE's tests into an image and run them
                                      in a VM, like go test (testdata included)
  vmm store COMMAND FILE ...          manage an object store file (vmm store help)
  vmm snapshot --api SOCKET [--stop] NAME
                                      snapshot a running VM (vmm run --api) into its store
  vmm snapshots STORE                 list the snapshots in a store
  vmm snapshots rm STORE@NAME...      delete snapshots
  vmm restore [flags] STORE@NAME      bring back a snapshot's VM and continue it
  vmm ps                              list the running VMs that serve a control API
  vmm pause|resume|stop --api SOCKET  pause, resume or stop a running VM
  vmm help [COMMAND]                  show help

Run 'vmm help run' or 'vmm help build' for their flags.
`

// started is when the process got to its own code (package variables
// are set after the runtime's and the imported packages' inits): vmm run
// --boot-time measures its phases from here.
var started = time.Now()

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Main runs the CLI and returns the process exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "build":
		return cmdBuild(args[1:], stdout, stderr)
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdin, stdout, stderr)
	case "store":
		if len(args) == 1 {
			return storecmd.Main([]string{"help"}, stdin, stdout, stderr)
		}
		return storecmd.Main(args[1:], stdin, stdout, stderr)
	case "snapshot":
		return cmdSnapshot(args[1:], stdout, stderr)
	case "snapshots":
		return cmdSnapshots(args[1:], stdout, stderr)
	case "restore":
		return cmdRestore(args[1:], stdin, stdout, stderr)
	case "ps":
		return cmdPs(args[1:], stdout, stderr)
	case "pause", "resume", "stop":
		return cmdControl(args[0], args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return Main([]string{args[1], "-h"}, stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "vmm: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

func cmdBuild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output image `path` (default: the package's directory name + .img; in that directory when it is one)")
	verbose := fs.Bool("v", false, "print the go command's output")
	files := fs.String("files", "", "pack `DIR` into the image: the guest finds its contents in its root file system")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: vmm build [-o IMAGE] [--files DIR] PACKAGE

Builds the main package PACKAGE with the stock Go toolchain (GOOS=linux
GOARCH=amd64 CGO_ENABLED=0), linking Amber's kernel into it, and writes a
bootable image. PACKAGE is an import path or a directory; a directory in
another module is built with a generated go.work that adds the kernel's
source, so that module needs no changes. A package in the module cache (a
dependency) builds too, from a copy of its module outside the cache, and
IMPORT/PATH@VERSION builds that version as go install does, whatever the
current module. Builds are cached by the Go build cache.

The image is written to a temporary file next to IMAGE and renamed over
it once complete: IMAGE is never left half written, and an interrupted
build (Ctrl-C) leaves no file behind. As with go build, IMAGE may replace
only an earlier image (an ELF file) or an empty file: a Go source file or
any other file is refused, and so are devices and named pipes, except
that -o /dev/null builds and checks the image and writes nothing. An
existing directory (or a path ending in /) gets the default name inside
it. A symbolic link is followed: its target is replaced.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagStatus(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	pkg := fs.Arg(0)
	name, _, _ := strings.Cut(pkg, "@") // IMPORT/PATH@VERSION is named as go install names it
	name = strings.TrimSuffix(name, "/")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if name == "." || name == "" {
		wd, _ := os.Getwd()
		name = wd[strings.LastIndex(wd, "/")+1:]
	}
	if *out == "" {
		*out = name + ".img"
	} else if st, err := os.Stat(*out); (err == nil && st.IsDir()) || strings.HasSuffix(*out, "/") {
		*out = filepath.Join(*out, name+".img") // as go build -o DIR/
	}
	var log io.Writer = io.Discard
	if *verbose {
		log = stderr
	}
	ctx, stop := interruptible()
	defer stop()
	_, err := build.Build(ctx, build.Options{Package: pkg, Output: *out, Log: warnings{log, stderr}, Files: *files})
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(stderr, "vmm build: interrupted; %s not written\n", *out)
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm build: %v\n", err)
		return 1
	}
	return 0
}

// interruptible returns a context cancelled by Ctrl-C (SIGINT) or SIGTERM,
// so that a build stops its go command and removes its temporary file
// instead of dying with it in place. The first signal restores the default
// handling: a second Ctrl-C kills vmm at once. So does stop.
func interruptible() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// warnings passes "warning:" lines to stderr even when the rest is quiet.
type warnings struct{ log, stderr io.Writer }

func (w warnings) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), "vmm build: warning:") && w.log == io.Discard {
		return w.stderr.Write(p)
	}
	return w.log.Write(p)
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseSize reads "128M", "1G", "512MiB" or a plain number of MiB.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := uint64(1 << 20)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		t = t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return 0, fmt.Errorf("invalid size %q (examples: 128M, 1G)", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mem := fs.String("mem", "128M", "guest memory `size` (e.g. 128M, 1G; a multiple of 2 MiB)")
	var cmdline, env listFlag
	fs.Var(&cmdline, "cmdline", "extra kernel `option` KEY=VALUE (repeatable)")
	fs.Var(&env, "env", "environment variable `KEY=VALUE` for the program (repeatable)")
	timeout := fs.Duration("timeout", 0, "stop the guest with a report after this `duration` (0: never)")
	trap := fs.String("syscall-trap", "", "how stray SYSCALL instructions reach the kernel: lstar or ud (default: lstar on kvm_pvm hosts, ud elsewhere)")
	bootPath := fs.String("boot", "direct", "boot `path`: direct (the VMM sets up long mode) or pvh (start at the image's 32-bit PVH entry, as QEMU, Firecracker and Cloud Hypervisor do)")
	apiSock := fs.String("api", "", "serve the VM's control API (pause, resume, snapshot, stop, metrics; docs/api.md) on this unix `socket`; vmm snapshot, pause, resume, stop and ps use it (KVM only)")
	prefault := fs.Bool("prefault", false, "populate the host pages the guest's boot touches (the image's bss, the tops of the first stacks, the first boot heap pages) before it starts, instead of on the guest's first touches (KVM only)")
	bootTime := fs.Bool("boot-time", false, "print on stderr the guest's kernel.Mark times since vCPU start, the VM's exits, the phases of this run (flags, opening the image, creating the VM, running it) and its memory (peak RSS, the guest RAM resident, the VMM's own)")
	accel := fs.String("accel", defaultAccel(), "`accelerator`: kvm (Amber's VMM on /dev/kvm) or tcg (QEMU's emulator, for hosts without KVM: about 10x slower, stdout and stderr both on stdout, stdin without end-of-file, a short crash message); default $AMBER_ACCEL, else kvm")
	diskSpec := fs.String("disk", "", "attach `FILE[,readonly]` as a virtio-blk disk, the block device /dev/vda in the guest: a raw image, or a store file made by vmm store create --disk-size (its object vm/disk; flush commits; KVM only). Amber's device under KVM, QEMU's under --accel tcg")
	netSpec := fs.String("net", "", "attach a virtio-net device: `user[,hostfwd=tcp:HOSTADDR:PORT-:GUESTPORT,...][,mac=MAC]` is a user-mode network without root, QEMU's addresses (guest 10.0.2.15, gateway 10.0.2.2 = the host's 127.0.0.1, DNS 10.0.2.3), NAT to the host, hostfwd as QEMU's (tcp: or udp:, several allowed; host port 0: a free port, printed); tap=NAME[,mac=MAC] attaches to a host tap device (needs CAP_NET_ADMIN or a tap your user owns; KVM only). Amber's device under KVM, QEMU's under --accel tcg")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: vmm run [flags] IMAGE [-- ARGS...]

Boots IMAGE in a KVM microVM. ARGS become the program's os.Args[1:]. The
program's stdout and stderr go to vmm's; stdin is passed through. vmm exits
with the program's exit status (128+n if it died of signal n), 125 if the
guest crashed (a report with registers, the faulting instruction and a
backtrace is printed), 126 if the VM could not be started. The first Ctrl-C
is delivered to the program as SIGINT; a second one stops the VM (130).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagStatus(err)
	}
	imgPath, guestArgs, ok := operandAndArgs(fs)
	if !ok {
		return exitUsage
	}
	for _, e := range env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			fmt.Fprintf(stderr, "vmm run: --env %q: want KEY=VALUE\n", e)
			return exitUsage
		}
	}
	for _, c := range cmdline {
		if k, _, ok := strings.Cut(c, "="); !ok || !strings.Contains(k, ".") {
			fmt.Fprintf(stderr, "vmm run: --cmdline %q: want a kernel option amber.KEY=VALUE\n", c)
			return exitUsage
		}
	}
	memBytes, err := parseSize(*mem)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --mem: %v\n", err)
		return exitUsage
	}
	var disks []qemu.Disk
	if *diskSpec != "" {
		d, err := parseDisk(*diskSpec)
		if err != nil {
			fmt.Fprintf(stderr, "vmm run: --disk: %v\n", err)
			return exitUsage
		}
		disks = append(disks, d)
	}
	var netSpecParsed *vmm.NetSpec
	if *netSpec != "" {
		ns, err := vmm.ParseNetSpec(*netSpec)
		if err != nil {
			fmt.Fprintf(stderr, "vmm run: --net: %v\n", err)
			return exitUsage
		}
		netSpecParsed = &ns
	}
	o := runOptions{
		image: imgPath, mem: memBytes, cmdline: cmdline, env: env, args: guestArgs, disks: disks, net: *netSpec, netSpec: netSpecParsed,
		timeout: *timeout, trap: *trap, boot: *bootPath, bootTime: *bootTime, accel: *accel, api: *apiSock,
		prefault: *prefault,
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "syscall-trap" || f.Name == "boot" || f.Name == "boot-time" || f.Name == "api" || f.Name == "prefault" {
			o.kvmOnly = append(o.kvmOnly, "--"+f.Name)
		}
	})
	return bootImage(o, stdin, stdout, stderr)
}

// runOptions is one boot of an image, for `vmm run` and `vmm test` alike.
type runOptions struct {
	image              string
	mem                uint64
	cmdline, env, args []string
	disks              []qemu.Disk
	net                string // --net as given: "user[,OPTIONS]", "tap=NAME" or ""
	netSpec            *vmm.NetSpec
	timeout            time.Duration
	trap, boot         string
	bootTime           bool
	accel              string   // kvm or tcg
	kvmOnly            []string // flags given that only the KVM path has
	api                string   // --api: the control API's socket, or ""
	prefault           bool     // --prefault
}

// bootImage boots an image as `vmm run` does and returns vmm's exit status.
func bootImage(o runOptions, stdin io.Reader, stdout, stderr io.Writer) int {
	tMain := time.Now()
	img, err := vmm.OpenImage(o.image)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return exitNotStart
	}
	defer img.Close()
	// Both accelerators: below this the runtime dies of out of memory
	// before main, which says nothing about --mem.
	if o.mem < img.MinMemory() {
		fmt.Fprintf(stderr, "vmm run: %s needs at least %d MiB of memory, but --mem gives %d MiB (raise --mem)\n", o.image, img.MinMemory()>>20, o.mem>>20)
		return exitNotStart
	}
	if o.accel == "tcg" {
		// QEMU's serial console carries the guest's stderr to its stdout.
		o.cmdline = append(stdioOptions(stdin, stdout, stdout), o.cmdline...)
	} else {
		o.cmdline = append(stdioOptions(stdin, stdout, stderr), o.cmdline...)
	}
	switch o.accel {
	case "kvm":
		if err := vmm.KVMAvailable(); err != nil {
			fmt.Fprintf(stderr, "vmm run: %v\n(on a host without KVM, --accel tcg runs the image under QEMU's emulator)\n", err)
			return exitNotStart
		}
	case "tcg":
		if len(o.kvmOnly) > 0 {
			fmt.Fprintf(stderr, "vmm run: %s: not available with --accel tcg (QEMU boots the PVH entry and has no Amber hypercalls)\n", strings.Join(o.kvmOnly, ", "))
			return exitUsage
		}
		if ns := o.netSpec; ns != nil && chosenPorts(ns.Forwards) {
			fmt.Fprintln(stderr, "vmm run: --net: a host port 0 (chosen by the kernel) is Amber's user network's (--accel kvm); QEMU's would not say which port it got")
			return exitUsage
		}
		if ns := o.netSpec; ns != nil && (ns.Tap != "" || ns.MAC != nil) {
			fmt.Fprintln(stderr, "vmm run: --net: tap= and mac= are Amber's device's (--accel kvm); under --accel tcg --net takes QEMU's user network options")
			return exitUsage
		}
		for _, d := range o.disks {
			if vmm.IsStoreDisk(d.Path) {
				fmt.Fprintf(stderr, "vmm run: --disk %s: a store file's disk is served by Amber's VMM only (--accel kvm); QEMU takes raw images\n", d.Path)
				return exitUsage
			}
		}
		return runTCG(o.image, o.mem, o.cmdline, o.env, o.args, o.disks, o.net, stdin, stdout, stderr, o.timeout)
	default:
		fmt.Fprintf(stderr, "vmm run: --accel %q: want kvm or tcg\n", o.accel)
		return exitUsage
	}
	if f, ok := stdin.(*os.File); ok && f != nil {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 && st.Mode().IsRegular() && st.Size() == 0 {
			stdin = nil
		}
	}
	disks, err := openDisks(o.disks)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --disk: %v\n", err)
		return exitNotStart
	}
	tOpen := time.Now()
	var nic *vmm.Net
	netReady := func() error { return nil }
	if o.netSpec != nil {
		if nic, netReady, err = openNet(*o.netSpec); err != nil {
			for _, d := range disks {
				d.Backend.Close()
			}
			fmt.Fprintf(stderr, "vmm run: --net: %v\n", err)
			return exitNotStart
		}
		if o.netSpec.User && !hasOption(o.cmdline, "amber.ip") {
			o.cmdline = append(vmm.UserNetCmdline(), o.cmdline...)
		}
		if chosenPorts(o.netSpec.Forwards) {
			printForwards(stderr, nic.Spec.Forwards)
		}
	}
	vm, err := vmm.New(vmm.Config{
		Image: img, Memory: o.mem, Cmdline: o.cmdline, Env: o.env, Args: o.args,
		Stdin: stdin, Stdout: stdout, Stderr: stderr, SyscallTrap: o.trap, Timeout: o.timeout, Boot: o.boot,
		Disks: disks, Net: nic, Prefault: o.prefault,
	})
	if err != nil {
		if nic != nil {
			nic.Backend.Close()
		}
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return exitNotStart
	}
	defer vm.Close()
	// The user-mode network comes up while the guest boots: if it fails
	// (a forward cannot listen), the VM stops and vmm run fails as if it
	// had not started.
	var netErr atomic.Pointer[error]
	go func() {
		if err := netReady(); err != nil {
			netErr.Store(&err)
			vm.Stop()
			return
		}
		if o.bootTime && nic != nil {
			fmt.Fprintf(vm.Stderr(), "vmm: network up %v after vmm's start\n", time.Since(procStart))
		}
	}()
	if o.api != "" {
		info := api.Info{Image: o.image, Forwards: forwardStrings(vm.NetSpec())}
		if len(o.disks) > 0 {
			info.Disk = o.disks[0].Path
		}
		stopAPI, err := serveAPI(vm, o.api, info)
		if err != nil {
			fmt.Fprintf(stderr, "vmm run: --api: %v\n", err)
			return exitNotStart
		}
		defer stopAPI()
	}
	// A console write to a pipe without readers returns EPIPE, which goes
	// to the guest (that dies of SIGPIPE as a native program would),
	// instead of killing vmm.
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer func() {
		// A Ctrl-C that comes while the VM is torn down (the second of a
		// quick pair, after the guest ended on the first) must not kill
		// vmm before it reports the guest's status.
		signal.Ignore(os.Interrupt)
		signal.Stop(sigs)
		close(sigs)
	}()
	go func() {
		// The first Ctrl-C goes to the guest as SIGINT (its os/signal
		// handlers see it; without one it exits with 130); the second, or
		// SIGTERM, stops the VM.
		interrupts := 0
		for s := range sigs {
			if s == os.Interrupt && interrupts == 0 && vm.Signal(syscall.SIGINT) {
				interrupts++
				continue
			}
			vm.Stop()
		}
	}()
	start := time.Now()
	status, err := vm.Run()
	tRun := time.Now()
	// From here on, messages go through the VM's stderr stream: in order
	// with the guest's output, and never blocked by a full pipe once the
	// VM was stopped.
	stderr = vm.Stderr()
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return exitNotStart
	}
	if e := netErr.Load(); e != nil {
		fmt.Fprintf(stderr, "vmm run: --net: %v\n", *e)
		return exitNotStart
	}
	if status == vmm.ExitInterrupted && vm.Stopped() {
		fmt.Fprintln(stderr, "vmm: interrupted; guest stopped")
	}
	if o.bootTime {
		for _, m := range vm.Marks() {
			fmt.Fprintf(stderr, "vmm: mark %d at %v after vCPU start\n", m.ID, m.SinceBoot)
		}
		if n := vm.DroppedMarks(); n > 0 {
			fmt.Fprintf(stderr, "vmm: %d later marks not kept (the first %d are)\n", n, len(vm.Marks()))
		}
		fmt.Fprintf(stderr, "vmm: guest ran %v; exits %v\n", tRun.Sub(start), vm.Exits())
		if img.Copied() {
			fmt.Fprintln(stderr, "vmm: image: a private copy of the file (it could not be leased, or was rewritten in place)")
		} else {
			fmt.Fprintln(stderr, "vmm: image: mapped from the file under a read lease")
		}
		// The phases of this run; exec, the runtime's start and the
		// package inits come before "started", the VM's teardown and the
		// process's exit after this line (a benchmark times them from
		// outside: BenchmarkHelloWall).
		fmt.Fprintf(stderr, "vmm: phases: to-run %v, open-image %v, create-vm %v, run %v, since-start %v, started-unix-ns %d\n",
			tMain.Sub(started), tOpen.Sub(tMain), start.Sub(tOpen), tRun.Sub(start), time.Since(started), started.UnixNano())
		// The guest's part of RSS is what RSS counts of its RAM: not
		// the pages it only read (the host's zero page).
		if guest, err := vm.GuestRSS(); err == nil {
			if peak, err := peakRSS(); err == nil {
				fmt.Fprintf(stderr, "vmm: memory: peak RSS %d KiB, guest RAM resident %d KiB, the VMM's own %d KiB\n", peak>>10, guest>>10, (peak-min(peak, guest))>>10)
			}
			lo, n := vm.GuestRAM()
			if s, err := memBreakdown(lo, n, guest); err == nil {
				fmt.Fprintf(stderr, "vmm: memory now, besides the guest's RAM: %s\n", s)
			}
		}
		if len(o.disks) > 0 {
			fmt.Fprintf(stderr, "vmm: disk requests %d\n", vm.DiskRequests())
		}
	}
	return status
}

// peakRSS is this process's peak resident set (VmHWM).
func peakRSS() (uint64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// operandAndArgs splits "OPERAND [--] [ARGS...]" after the flags; without
// an operand it prints the usage.
func operandAndArgs(fs *flag.FlagSet) (string, []string, bool) {
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return "", nil, false
	}
	args := rest[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	return rest[0], args, true
}

func flagStatus(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return exitUsage
}

func cmdTest(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mem := fs.String("mem", "512M", "guest memory `size`")
	timeout := fs.Duration("timeout", 10*time.Minute, "stop the tests after this `duration`")
	keep := fs.String("o", "", "also keep the test image at `path`")
	accel := fs.String("accel", defaultAccel(), "`accelerator`: kvm or tcg (QEMU's emulator; see vmm help run)")
	pack := fs.String("pack", "module", "what the guest's file system holds: `module` (the package's module, so ../testdata is there) or package (its directory only)")
	packMax := fs.String("pack-max", "32M", "the most --pack=module packs (`size`): a larger module packs only the package's directory, with a warning")
	diskSpec := fs.String("disk", "", "attach `FILE[,readonly]` as the guest's disk, as vmm run --disk does: the tests see its file system at /data, and their temporary directories go to /data/tmp (TMPDIR, made on the disk first) unless --env sets TMPDIR")
	netSpec := fs.String("net", "", "attach a virtio-net device as vmm run --net does: `user[,OPTIONS]` (QEMU's user-mode network; --accel tcg only for now)")
	var env listFlag
	fs.Var(&env, "env", "environment variable `KEY=VALUE` for the tests (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: vmm test [flags] PACKAGE [-- TESTFLAGS]

Builds the test binary of PACKAGE (an import path or a directory; the
standard library's packages and dependencies in the module cache work too)
into an image, packs the package's module (what its tests can reach, such
as ../testdata: the module's directory tree less VCS directories and
nested modules, at most --pack-max) into the guest's file system at the
same path, boots it and runs the tests there in the package's directory,
as go test does: TESTFLAGS are the test binary's own flags (-test.run,
-test.short, -test.v, ...). A standard-library package gets its directory
and GOROOT's src/testdata. Prints "ok PACKAGE TIME" or the output and
"FAIL PACKAGE TIME"; the exit status is the test binary's.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagStatus(err)
	}
	pkg, testArgs, ok := operandAndArgs(fs)
	if !ok {
		return exitUsage
	}
	memBytes, err := parseSize(*mem)
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: --mem: %v\n", err)
		return exitUsage
	}
	tmpdirSet := false
	for _, e := range env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			fmt.Fprintf(stderr, "vmm test: --env %q: want KEY=VALUE\n", e)
			return exitUsage
		}
		tmpdirSet = tmpdirSet || strings.HasPrefix(e, "TMPDIR=")
	}
	var disks []qemu.Disk
	if *diskSpec != "" {
		d, err := parseDisk(*diskSpec)
		if err != nil {
			fmt.Fprintf(stderr, "vmm test: --disk: %v\n", err)
			return exitUsage
		}
		if !tmpdirSet && !d.ReadOnly {
			// The guest's os.TempDir must exist: made from the host (on
			// a blank disk, with the file system) before the boot.
			if err := storecmd.MkdirData(d.Path, "tmp"); err != nil {
				fmt.Fprintf(stderr, "vmm test: --disk: making /data/tmp: %v\n", err)
				return 1
			}
			env = append(env, "TMPDIR=/data/tmp")
		}
		disks = append(disks, d)
	}
	if *netSpec != "" && *netSpec != "user" && !strings.HasPrefix(*netSpec, "user,") {
		fmt.Fprintf(stderr, "vmm test: --net %q: want user[,OPTIONS] (QEMU's user-mode network)\n", *netSpec)
		return exitUsage
	}
	if *pack != "module" && *pack != "package" {
		fmt.Fprintf(stderr, "vmm test: --pack %q: want module or package\n", *pack)
		return exitUsage
	}
	maxBytes, err := parseSize(*packMax)
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: --pack-max: %v\n", err)
		return exitUsage
	}
	// A directory is listed from inside it, so its own module resolves it.
	list := exec.Command("go", "list", "-f", "{{.Dir}}|{{.ImportPath}}|{{.Standard}}|{{with .Module}}{{.Dir}}{{end}}", pkg)
	if st, err := os.Stat(pkg); err == nil && st.IsDir() {
		if pkg, err = filepath.Abs(pkg); err != nil {
			fmt.Fprintf(stderr, "vmm test: %v\n", err)
			return 1
		}
		list.Dir, list.Args[len(list.Args)-1] = pkg, "."
	}
	var listErr bytes.Buffer
	list.Stderr = &listErr
	out, err := list.Output()
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: cannot find package %s: %v\n%s", pkg, err, listErr.String())
		return 1
	}
	fields := strings.Split(strings.TrimSpace(string(out)), "|")
	if len(fields) != 4 {
		fmt.Fprintf(stderr, "vmm test: %s names several packages; name one\n", pkg)
		return exitUsage
	}
	dir, importPath, standard, modDir := fields[0], fields[1], fields[2] == "true", fields[3]
	files, workDir := dir, ""
	var skip []string
	if *pack == "module" && !standard && modDir != "" {
		var size uint64
		skip, size, err = moduleFiles(modDir, maxBytes)
		if err != nil {
			fmt.Fprintf(stderr, "vmm test: %v\n", err)
			return 1
		}
		if size > maxBytes {
			fmt.Fprintf(stderr, "vmm test: warning: module %s holds over %s (--pack-max): packing only the package's directory\n", modDir, *packMax)
		} else {
			files, workDir = modDir, dir
		}
	}
	img := *keep
	if img == "" {
		tmp, err := os.MkdirTemp("", "vmm-test-")
		if err != nil {
			fmt.Fprintf(stderr, "vmm test: %v\n", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		img = filepath.Join(tmp, "test.img")
	} else if img, err = filepath.Abs(img); err != nil {
		fmt.Fprintf(stderr, "vmm test: %v\n", err)
		return 1
	}
	// The time zone database the standard library's time tests load, at
	// the path Go itself looks for it, with ZONEINFO pointing there.
	extra := map[string]string{}
	if goroot, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		gr := strings.TrimSpace(string(goroot))
		zi := filepath.Join(gr, "lib", "time", "zoneinfo.zip")
		if _, err := os.Stat(zi); err == nil {
			extra[zi] = zi
			env = append(env, "ZONEINFO="+zi)
		}
		// The standard library's shared test data ($GOROOT/src/testdata),
		// which packages reach as ../../testdata.
		if strings.HasPrefix(dir, filepath.Join(gr, "src")+string(filepath.Separator)) {
			shared := filepath.Join(gr, "src", "testdata")
			if ents, err := os.ReadDir(shared); err == nil {
				for _, e := range ents {
					if e.Type().IsRegular() {
						extra[filepath.Join(shared, e.Name())] = filepath.Join(shared, e.Name())
					}
				}
			}
		}
	}
	start := time.Now()
	ctx, stop := interruptible()
	_, err = build.Build(ctx, build.Options{
		Package: pkg, Output: img, Test: true, Files: files, FilesAt: files, WorkDir: workDir, FilesSkip: skip, ExtraFiles: extra,
		Log: warnings{io.Discard, stderr},
	})
	interrupted := ctx.Err() != nil // before stop, which cancels ctx
	stop()
	if err != nil && interrupted {
		fmt.Fprintf(stderr, "vmm test: interrupted\nFAIL\t%s [build interrupted]\n", importPath)
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: %v\nFAIL\t%s [build failed]\n", err, importPath)
		return 1
	}
	var buf bytes.Buffer
	code := bootImage(runOptions{image: img, mem: memBytes, env: env, args: testArgs, disks: disks, net: *netSpec, timeout: *timeout, accel: *accel, boot: "direct"},
		stdin, io.MultiWriter(&buf, verboseWriter(stdout, testArgs)), io.MultiWriter(&buf, verboseWriter(stderr, testArgs)))
	elapsed := time.Since(start).Seconds()
	if code != 0 {
		if !isVerbose(testArgs) {
			stdout.Write(buf.Bytes())
		}
		fmt.Fprintf(stdout, "FAIL\t%s\t%.3fs\n", importPath, elapsed)
		return code
	}
	fmt.Fprintf(stdout, "ok  \t%s\t%.3fs\n", importPath, elapsed)
	return 0
}

// moduleFiles returns what vmm test skips when it packs the module at
// root (VCS directories and nested modules, which are not part of it) and
// the size of the rest, counted up to just over limit.
func moduleFiles(root string, limit uint64) (skip []string, size uint64, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root {
			switch d.Name() {
			case ".git", ".hg", ".svn", ".bzr":
				skip = append(skip, p)
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				skip = append(skip, p)
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			size += uint64(info.Size())
			if size > limit {
				return filepath.SkipAll
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("packing module %s: %w", root, err)
	}
	return skip, size, nil
}

func isVerbose(args []string) bool {
	for _, a := range args {
		if a == "-test.v" || a == "-test.v=true" || a == "-v" {
			return true
		}
	}
	return false
}

// verboseWriter passes output through only with -test.v, as go test
// shows a passing package's output only then.
func verboseWriter(w io.Writer, args []string) io.Writer {
	if isVerbose(args) {
		return w
	}
	return io.Discard
}

// defaultAccel is --accel's default: $AMBER_ACCEL, else kvm.
func defaultAccel() string {
	if a := os.Getenv("AMBER_ACCEL"); a != "" {
		return a
	}
	return "kvm"
}

// runTCG is vmm run --accel tcg: the image under QEMU's emulator, with
// vmm run's exit statuses (tools/qemu says what differs from KVM).
func runTCG(imgPath string, mem uint64, options, env, args []string, disks []qemu.Disk, netSpec string, stdin io.Reader, stdout, stderr io.Writer, timeout time.Duration) int {
	if err := qemu.Available(); err != nil {
		fmt.Fprintf(stderr, "vmm run: --accel tcg: %v\n", err)
		return exitNotStart
	}
	if mem%(1<<20) != 0 {
		fmt.Fprintln(stderr, "vmm run: --accel tcg: --mem must be a whole number of MiB")
		return exitUsage
	}
	// QEMU locks its images its own way; the disk lock (filedev's, as
	// Amber's VMM takes it) keeps vmm store put FILE:/data/... and other
	// VMs off a disk while QEMU runs on it.
	for _, d := range disks {
		f, err := lockDisk(d)
		if err != nil {
			fmt.Fprintf(stderr, "vmm run: --disk: %v\n", err)
			return exitNotStart
		}
		defer f.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	argv0 := "amber.argv0=" + strings.TrimSuffix(filepath.Base(imgPath), ".img")
	status, err := qemu.Run(ctx, qemu.Config{
		Image: imgPath, Memory: mem, Options: append([]string{argv0}, options...), Env: env, Args: args,
		Stdin: stdin, Stdout: stdout, Stderr: stderr, Timeout: timeout, Disks: disks,
		Network: netSpec != "", Net: strings.TrimPrefix(strings.TrimPrefix(netSpec, "user"), ","),
	})
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return exitNotStart
	}
	return status
}

// lockDisk takes d's disk lock (shared for a read-only disk), held until
// the returned file is closed.
func lockDisk(d qemu.Disk) (*os.File, error) {
	flag := os.O_RDWR
	if d.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return nil, err
	}
	if err := filedev.LockFile(f, !d.ReadOnly); err != nil {
		f.Close()
		return nil, vmm.InUse(err)
	}
	return f, nil
}

// openNet opens the network device's backend: the user-mode network (the
// vmm-net process; its host forwards listen from here on) or the tap
// device.
func openNet(ns vmm.NetSpec) (nic *vmm.Net, ready func() error, err error) {
	mac := ns.MAC
	if mac == nil {
		mac = vmm.RandomMAC()
	}
	var be vmm.NetBackend
	ready = func() error { return nil }
	if ns.User {
		// vmm-net starts while the VM is made and boots (ready reports
		// how its start went).
		be, ready, err = vmm.StartUserNetAsync(mac, ns.Forwards)
	} else {
		be, err = vmm.OpenTap(ns.Tap)
	}
	if err != nil {
		return nil, nil, err
	}
	if chosenPorts(ns.Forwards) {
		// The ports are known once vmm-net listens: wait, so that the
		// VM's description (and its snapshots) hold them.
		if err := ready(); err != nil {
			return nil, nil, err
		}
		ns.Forwards = vmm.UserNetForwards(be)
	}
	ns.MAC = mac
	return &vmm.Net{Backend: be, MAC: mac, Spec: &ns}, ready, nil
}

// chosenPorts reports whether a forward asks for a host port the kernel
// chooses (port 0).
func chosenPorts(fs []vmm.HostFwd) bool {
	for _, f := range fs {
		if f.HostPort == 0 {
			return true
		}
	}
	return false
}

// forwardStrings is a network's forwards for api.Info.
func forwardStrings(ns *vmm.NetSpec) []string {
	var out []string
	if ns != nil {
		for _, f := range ns.Forwards {
			out = append(out, f.String())
		}
	}
	return out
}

// printForwards tells the user the host ports of forwards (those the
// kernel chose in particular), as "vmm: hostfwd tcp:127.0.0.1:41234-:80".
func printForwards(w io.Writer, fs []vmm.HostFwd) {
	for _, f := range fs {
		fmt.Fprintf(w, "vmm: hostfwd %v\n", f)
	}
}

// hasOption reports whether the kernel options set key (KEY=VALUE).
func hasOption(opts []string, key string) bool {
	for _, o := range opts {
		if k, _, _ := strings.Cut(o, "="); k == key {
			return true
		}
	}
	return false
}

// openDisks opens the disks' backends for the VMM's virtio-blk devices;
// the VM closes them.
func openDisks(ds []qemu.Disk) ([]vmm.Disk, error) {
	var out []vmm.Disk
	for _, d := range ds {
		open := vmm.OpenRawDisk
		if vmm.IsStoreDisk(d.Path) {
			open = vmm.OpenStoreDisk
		}
		b, err := open(d.Path, d.ReadOnly)
		if err != nil {
			for _, o := range out {
				o.Backend.Close()
			}
			return nil, err
		}
		out = append(out, vmm.Disk{Backend: b, ReadOnly: d.ReadOnly})
	}
	return out, nil
}

// parseDisk reads --disk FILE[,readonly] and checks the file: a raw disk
// image is a regular file (or a host block device) whose size is a whole
// number of 512-byte sectors, readable, and writable unless readonly.
func parseDisk(spec string) (qemu.Disk, error) {
	d := qemu.Disk{Path: spec}
	if i := strings.LastIndexByte(spec, ','); i >= 0 {
		if _, err := os.Stat(spec); err == nil {
			// A file whose name has a comma.
		} else if opt := spec[i+1:]; opt == "readonly" {
			d.Path, d.ReadOnly = spec[:i], true
		} else {
			return d, fmt.Errorf("%q: unknown option %q (want FILE or FILE,readonly)", spec, opt)
		}
	}
	if d.Path == "" {
		return d, fmt.Errorf("%q: no file named", spec)
	}
	st, err := os.Stat(d.Path)
	if err != nil {
		return d, err
	}
	size := st.Size()
	switch m := st.Mode(); {
	case m.IsDir():
		return d, fmt.Errorf("%s is a directory, not a disk image", d.Path)
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		size = -1 // a host block device: QEMU reads its size
	case !m.IsRegular():
		return d, fmt.Errorf("%s is not a regular file (%v): a disk image must be a file or a block device", d.Path, m.Type())
	}
	flag := os.O_RDWR
	if d.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return d, err
	}
	f.Close()
	if vmm.IsStoreDisk(d.Path) {
		return d, nil // its disk object is checked when it is opened
	}
	if size == 0 || size%512 != 0 {
		return d, fmt.Errorf("%s: %d bytes: a disk image must be a non-empty whole number of 512-byte sectors", d.Path, size)
	}
	return d, nil
}
