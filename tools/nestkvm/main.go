// Command nestkvm runs the VMM's KVM-only tests on real KVM where the host
// has no /dev/kvm: a Debian Linux with kvm_amd boots under QEMU's
// emulator with an emulated AMD CPU that has SVM (`-accel tcg -cpu
// max,+svm`), whose /dev/kvm works, and runs the tests there. `make test`
// runs it through TestNestedKVM when /dev/kvm is missing; `make kvmtest`
// runs it alone.
//
// The KVM-only tests are the tests of ./vmm and ./tests/guest that call
// needKVM, found by reading their source. The nested Linux has no Go
// toolchain (and compiling under the emulator would take forever), so
// everything is built on the host into a directory shared over 9p: the
// test binaries (static), the vmm binary at bin/vmm, and each image a
// KVM-only test names at img/PKG.img (PKG relative to the module). The
// tests' helpers take the binary and the images from there when
// AMBER_TEST_PREBUILT is set, which only the nested run does.
//
// The nested Linux is Debian's current kernel (linux-image-amd64's
// dependency) and busybox-static, fetched with apt-get download and
// cached under ~/.cache/amber/nestkvm keyed by their versions, with an
// initramfs built here (the modules for KVM, virtio-pci and 9p,
// decompressed). Its /init mounts the share, runs run.sh and prints its
// status before powering off; QEMU is killed at the timeout or when this
// process dies. See docs/reliability.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// cacheDir is where prepared nested Linuxes are kept.
func cacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "amber", "nestkvm"), nil
}

// moduleRoot is the directory of the module the go command is in.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the Amber module")
	}
	return filepath.Dir(mod), nil
}

func main() {
	timeout := flag.Duration("timeout", 20*time.Minute, "stop the nested Linux after this long")
	verbose := flag.Bool("v", false, "copy the nested Linux's console to stdout as it comes")
	run := flag.String("run", "", "run only the KVM-only tests whose names match this regular expression")
	bench := flag.String("bench", "", "run the KVM-only benchmarks whose names match this regular expression (-benchtime 1x; no tests unless -run is given too)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./tools/nestkvm [-v] [-run REGEXP] [-bench REGEXP] [-timeout D]\n\nRuns the KVM-only tests (and benchmarks) of ./vmm and ./tests/guest on KVM nested under QEMU's emulator.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nestkvm:", err)
		os.Exit(1)
	}
	cache, err := cacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nestkvm:", err)
		os.Exit(1)
	}
	var runRE *regexp.Regexp
	if *run != "" {
		if runRE, err = regexp.Compile(*run); err != nil {
			fmt.Fprintln(os.Stderr, "nestkvm: -run:", err)
			os.Exit(2)
		}
	}
	var benchRE *regexp.Regexp
	if *bench != "" {
		if benchRE, err = regexp.Compile(*bench); err != nil {
			fmt.Fprintln(os.Stderr, "nestkvm: -bench:", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var console io.Writer
	if *verbose {
		console = os.Stdout
	}
	r, want, err := Run(ctx, Options{Root: root, Cache: cache, Timeout: *timeout, Run: runRE, Bench: benchRE, Log: os.Stderr, Console: console})
	if r != nil {
		r.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nestkvm:", err)
		os.Exit(1)
	}
	if bad := r.Failures(want); len(bad) > 0 {
		if !*verbose {
			fmt.Fprintf(os.Stderr, "nestkvm: the nested console:\n%s\n", r.Console)
		}
		fmt.Fprintf(os.Stderr, "nestkvm: FAIL\n  %s\n", strings.Join(bad, "\n  "))
		os.Exit(1)
	}
	fmt.Println("nestkvm: ok")
}
