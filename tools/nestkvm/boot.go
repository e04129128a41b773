package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amberos/amber/tools/qemu"
)

// BootConfig describes one boot of the nested Linux.
type BootConfig struct {
	Linux   *Linux
	Share   string // the host directory /share is in the nested Linux
	Memory  string // QEMU's -m
	Timeout time.Duration
	Console io.Writer // every console line, as it comes
}

// BootResult is what a boot of the nested Linux gave.
type BootResult struct {
	Status int           // run.sh's exit status
	Up     time.Duration // from QEMU's start to the first line of run.sh
}

// qemuArgs returns QEMU's command line for c: an emulated AMD CPU with
// SVM, so the nested Linux has a working /dev/kvm.
func qemuArgs(c BootConfig) []string {
	return []string{
		"-M", "q35", "-accel", "tcg", "-cpu", "max,+svm", "-smp", "1", "-m", c.Memory,
		"-kernel", c.Linux.Kernel, "-initrd", c.Linux.Initramfs,
		"-append", "console=ttyS0 quiet panic=-1",
		"-nographic", "-nodefaults", "-no-user-config", "-serial", "stdio", "-no-reboot",
		"-virtfs", "local,path=" + c.Share + ",mount_tag=host0,security_model=none,readonly=on",
	}
}

// runMarker is the first line run.sh prints: the nested Linux is up.
const runMarker = "nestkvm: running"

// Boot boots the nested Linux, which runs c.Share/run.sh and powers off,
// and returns run.sh's exit status. It fails if QEMU fails, the nested
// Linux never gets to run.sh, or c.Timeout passes (QEMU is then killed,
// as it is if this process dies).
func Boot(ctx context.Context, c BootConfig) (BootResult, error) {
	if err := qemu.Available(); err != nil {
		return BootResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu.Binary, qemuArgs(c)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return BootResult{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return BootResult{}, fmt.Errorf("starting %s: %w", qemu.Binary, err)
	}
	var r BootResult
	status, last := -1, ""
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintln(c.Console, line)
		// The firmware's escape sequences may come first on the line.
		if r.Up == 0 && strings.Contains(line, runMarker) {
			r.Up = time.Since(start)
		}
		if s, ok := strings.CutPrefix(line, statusMarker); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				status = n
			}
		}
		if strings.HasPrefix(line, "nestkvm:") {
			last = line
		}
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("the nested Linux did not finish within %v (%v); QEMU stopped", c.Timeout, ctx.Err())
	case status < 0 && werr != nil:
		return r, fmt.Errorf("%s failed: %v: %s", qemu.Binary, werr, strings.TrimSpace(stderr.String()))
	case status < 0:
		if last == "" {
			last = "no line of its own on the console"
		}
		return r, errors.New("the nested Linux powered off without the status of run.sh; its last word: " + last)
	}
	r.Status = status
	return r, nil
}
