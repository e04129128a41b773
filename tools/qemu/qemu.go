// Package qemu boots an Amber image under QEMU's TCG emulator: what
// `vmm run --accel tcg` does on a host without a usable /dev/kvm. The image
// enters through its PVH note and 32-bit entry, exactly as under any
// PVH-capable VMM, so this runs the same kernel and program as Amber's
// VMM, about ten times slower and with less around it: no Amber
// hypercalls (the console is the 16550 UART, which carries stdout and
// stderr both; stdin arrives on it but has no end-of-file), the exit
// status comes back through QEMU's isa-debug-exit device (its low 7 bits;
// the whole byte through a second 16550 at 0x2f8), and a crash is
// reported by the kernel's own short message rather than the VMM's
// register dump and backtrace.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/amberos/amber/boot"
)

// Binary is the QEMU system emulator used.
const Binary = "qemu-system-x86_64"

// Available says why QEMU cannot be used, or returns nil.
func Available() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("%s is not installed (Debian/Ubuntu: apt-get install qemu-system-x86)", Binary)
	}
	return nil
}

// Config describes one boot.
type Config struct {
	Image   string
	Memory  uint64   // bytes; a multiple of 1 MiB
	Options []string // kernel options (amber.KEY=VALUE)
	Env     []string
	Args    []string
	Stdin   io.Reader // to the serial line; nil: nothing
	Stdout  io.Writer // the serial console: the guest's stdout and stderr
	Stderr  io.Writer // QEMU's own messages and the runner's
	Timeout time.Duration
	Disks   []Disk // virtio-blk devices, /dev/vda first
	// Net is a user-mode network (QEMU's -netdev user options after
	// "user", such as "hostfwd=tcp:127.0.0.1:8080-:80"; "" with Network
	// set: none) on a virtio-net device.
	Net     string
	Network bool

	statusFile string // Run's side channel for the exit status (COM2)
}

// Disk is a raw disk image attached as a virtio-blk device on the
// machine's virtio-mmio bus.
type Disk struct {
	Path     string
	ReadOnly bool
}

// Exit statuses that are not the guest's own, as vmm run gives them.
const (
	ExitCrash       = boot.ExitCrash // the guest reset, crashed or ran out of time
	ExitInterrupted = 130
)

// Args returns QEMU's command line for c (without the binary).
func Args(c Config) []string {
	// ACPI off: the kernel reads no ACPI tables, and only without them
	// does QEMU (7.2) name the virtio-mmio transports on the command line.
	opts := c.Options
	if c.Network && !hasNetOption(opts) {
		opts = append(append([]string(nil), opts...), UserNetOptions...)
	}
	args := []string{
		"-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "max",
		"-m", fmt.Sprintf("%dM", c.Memory>>20),
		"-kernel", c.Image, "-append", boot.Cmdline(opts, c.Env, c.Args),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-chardev", "stdio,id=console", "-serial", "chardev:console",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-no-reboot",
	}
	if c.statusFile != "" {
		// COM2: the kernel writes its whole exit status there before
		// isa-debug-exit, whose host exit status keeps 7 bits of it.
		args = append(args, "-chardev", "file,id=status,path="+strings.ReplaceAll(c.statusFile, ",", ",,"), "-device", "isa-serial,chardev=status,iobase=0x2f8,irq=3")
	}
	if len(c.Disks) > 0 || c.Network {
		// microvm's virtio-mmio transports are legacy (version 1) unless
		// told otherwise; the kernel drives virtio 1.x only. QEMU appends
		// virtio_mmio.device=512@ADDR:IRQ to the command line for every
		// transport with a device (auto-kernel-cmdline, on by default),
		// at the very end: after the program's arguments.
		args = append(args, "-global", "virtio-mmio.force-legacy=false")
	}
	for i, d := range c.Disks {
		drive := fmt.Sprintf("file=%s,format=raw,if=none,id=d%d", strings.ReplaceAll(d.Path, ",", ",,"), i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-device,drive=d%d", i))
	}
	if c.Network {
		netdev := "user,id=n0"
		if c.Net != "" {
			netdev += "," + c.Net
		}
		args = append(args, "-netdev", netdev, "-device", "virtio-net-device,netdev=n0")
	}
	return args
}

// UserNetOptions configure the guest's interface statically for QEMU's
// user-mode network (its defaults: the guest 10.0.2.15, the host's
// loopback reached as the gateway 10.0.2.2, a DNS forwarder at 10.0.2.3;
// fec0::/64 for IPv6). Args adds them with Network unless the kernel
// options configure the interface already (amber.ip=, amber.ip=dhcp).
var UserNetOptions = []string{"amber.ip=10.0.2.15/24", "amber.gw=10.0.2.2", "amber.dns=10.0.2.3", "amber.ip6=fec0::15/64"}

func hasNetOption(opts []string) bool {
	for _, o := range opts {
		if strings.HasPrefix(o, "amber.ip=") {
			return true
		}
	}
	return false
}

// Run boots c.Image and returns the guest's exit status, ExitCrash if it
// reset or crashed or c.Timeout passed, ExitInterrupted if ctx was
// cancelled; err is for QEMU failing to run at all.
func Run(ctx context.Context, c Config) (status int, err error) {
	if err := Available(); err != nil {
		return 0, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut <-chan time.Time
	if c.Timeout > 0 {
		t := time.NewTimer(c.Timeout)
		defer t.Stop()
		timedOut = t.C
	}
	dir, err := os.MkdirTemp("", "amber-qemu-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	c.statusFile = filepath.Join(dir, "status")
	cmd := exec.CommandContext(runCtx, Binary, Args(c)...)
	cmd.Stdin, cmd.Stdout = c.Stdin, c.Stdout
	var qerr bytes.Buffer
	cmd.Stderr = io.MultiWriter(&qerr, c.Stderr)
	cmd.WaitDelay = 2 * time.Second
	// QEMU must not outlive vmm, however vmm ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", Binary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var why string
	select {
	case err = <-done:
	case <-timedOut:
		why = fmt.Sprintf("the guest did not finish within %v; stopped", c.Timeout)
	case <-ctx.Done():
		why = "interrupted; guest stopped"
	}
	if why != "" {
		cancel()
		<-done
		fmt.Fprintf(c.Stderr, "vmm: %s\n", why)
		if ctx.Err() != nil {
			return ExitInterrupted, nil
		}
		return ExitCrash, nil
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		// QEMU exits 0 when the guest resets, which -no-reboot turns into
		// an exit: a triple fault.
		fmt.Fprintln(c.Stderr, "vmm: the guest reset (a triple fault); stopped")
		return ExitCrash, nil
	case errors.As(err, &ee) && ee.ExitCode() > 0 && ee.ExitCode()&1 == 1 && !strings.Contains(qerr.String(), Binary+":"):
		// isa-debug-exit: QEMU exits with (v<<1)|1 for the guest's v,
		// of which 7 bits survive; the kernel wrote all of v to COM2.
		// QEMU's own failures exit 1 too, but say so on stderr first.
		v := ee.ExitCode() >> 1
		if b, _ := os.ReadFile(c.statusFile); len(b) > 0 && int(b[len(b)-1])&0x7f == v {
			v = int(b[len(b)-1])
		}
		return v, nil
	}
	return 0, fmt.Errorf("%s failed: %v: %s", Binary, err, strings.TrimSpace(qerr.String()))
}
