// Package guestrun boots an Amber image for tests and stress runs: in a
// KVM microVM through the vmm binary when /dev/kvm is usable, or under
// QEMU's TCG emulator (through the image's PVH entry) when it is not, so
// the guest kernel is exercised on hosts without KVM too.
//
// Both run through the vmm binary (vmm run --accel kvm|tcg). Under QEMU
// the guest's stdout and stderr both go to the serial console
// (Result.Stdout holds both).
package guestrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/tools/qemu"
	"github.com/amberos/amber/vmm"
)

// Accel names how a guest is run.
type Accel string

const (
	KVM Accel = "kvm" // Amber's VMM on /dev/kvm
	TCG Accel = "tcg" // qemu-system-x86_64 -accel tcg
)

// Detect picks KVM when it is usable and TCG otherwise; it fails, saying
// what is missing, when neither is.
func Detect() (Accel, error) {
	kvmErr := vmm.KVMAvailable()
	if kvmErr == nil {
		return KVM, nil
	}
	qemuErr := qemu.Available()
	if qemuErr == nil {
		return TCG, nil
	}
	return "", fmt.Errorf("no way to boot a guest here: %v; and %v", kvmErr, qemuErr)
}

// Parse turns "auto", "kvm" or "tcg" into an Accel ("auto": Detect).
func Parse(s string) (Accel, error) {
	switch s {
	case "auto", "":
		return Detect()
	case string(KVM):
		return KVM, vmm.KVMAvailable()
	case string(TCG):
		return TCG, qemu.Available()
	}
	return "", fmt.Errorf("unknown accelerator %q: want auto, kvm or tcg", s)
}

// Config describes one boot.
type Config struct {
	VMM     string        // the vmm binary (KVM runs)
	Image   string        // the image built by vmm build
	Args    []string      // os.Args[1:] of the guest
	Env     []string      // KEY=VALUE
	Mem     string        // guest memory, e.g. "256M"; "" for the default
	Timeout time.Duration // 0: none
}

// Result is what a boot produced.
type Result struct {
	Stdout, Stderr string // under TCG, Stdout holds both
	Status         int    // the guest's exit status; -1 if it did not exit by itself
	TimedOut       bool
	Elapsed        time.Duration
}

// Output is everything the guest printed.
func (r Result) Output() string { return r.Stdout + r.Stderr }

// Run boots c.Image with accel and waits for it to stop.
func Run(ctx context.Context, accel Accel, c Config) (Result, error) {
	// Both go through vmm run; --accel tcg hands the image to QEMU. vmm
	// enforces the timeout (and says so); the context is a backstop.
	args := []string{"run", "--accel", string(accel)}
	if c.Timeout > 0 {
		args = append(args, "--timeout", c.Timeout.String())
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout+time.Minute)
		defer cancel()
	}
	if c.Mem != "" {
		args = append(args, "--mem", c.Mem)
	}
	for _, e := range c.Env {
		args = append(args, "--env", e)
	}
	args = append(args, c.Image)
	if len(c.Args) > 0 {
		args = append(append(args, "--"), c.Args...)
	}
	cmd := exec.CommandContext(ctx, c.VMM, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), Status: -1, Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		r.TimedOut = true
		return r, nil
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return r, err
	}
	r.Status = code
	r.TimedOut = code == boot.ExitCrash && strings.Contains(r.Stderr, "did not finish within")
	return r, nil
}
