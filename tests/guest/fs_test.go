package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/amberos/amber/tools/compat/suites"
	"github.com/amberos/amber/tools/guestrun"
)

// The in-memory file system (kernel/fs*.go), pipes and packed files,
// exercised by real guests.

func TestFileSystemOps(t *testing.T) {
	r := runImage(t, "./testdata/fsops")
	expect(t, r, 0, "ok pipe\n", "ok hardlink-count\n", "ok rename-over\n", "ALL OK\n")
	if !strings.Contains(r.stderr, "to stderr\nto stderr again\n") {
		t.Errorf("stderr lacks the program's two lines:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "unimplemented system call") {
		t.Errorf("the program met an unimplemented system call:\n%s", r.stderr)
	}
}

func TestPackedFiles(t *testing.T) {
	needGuest(t)
	img := filepath.Join(t.TempDir(), "packed.img")
	// A copy, with modes git does not keep (it records only the x bit).
	root := filepath.Join(t.TempDir(), "packedroot")
	if err := os.CopyFS(root, os.DirFS("testdata/packedroot")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "data", "sub", "nested.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vmmBin, "build", "--files", root, "-o", img, "./testdata/packedfiles")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vmm build --files: %v\n%s", err, out)
	}
	r := run(t, "run", "--timeout", "60s", img)
	expect(t, r, 0,
		`greeting="hello from the image\n" err=<nil>`,
		"/data/link Lrwxrwxrwx 19\n",
		"/data/run.sh -rwxr-xr-x 18\n",
		"/data/sub drwxr-xr-x",
		"/data/sub/nested.txt -rw------- 7\n",
		"link=../etc/greeting.txt err=<nil>",
		`via link="hello from the image\n"`,
		`after write="hello from the image\nand from the guest\n" err=<nil>`,
		"mtime year: true")
}

// stdTest runs the standard library's own tests of pkg in a guest with
// `vmm test`, as make compat does: the package's directory is packed into
// the guest and is the tests' working directory.
func stdTest(t *testing.T, pkg string, args ...string) result {
	t.Helper()
	return stdTestWith(t, []string{"--mem", "512M"}, pkg, args...)
}

// stdTestWith is stdTest with vmm test's own flags (--disk, --mem).
func stdTestWith(t *testing.T, flags []string, pkg string, args ...string) result {
	t.Helper()
	if guestReason != nil {
		t.Skip(guestReason)
	}
	// On KVM, or under QEMU's emulator where /dev/kvm is not usable.
	timeout := "120s"
	if guestAccel == guestrun.TCG {
		timeout = "900s" // net/http: 500 s on a loaded 2-core host
	}
	cmd := append([]string{"test", "--accel", string(guestAccel), "--timeout", timeout}, flags...)
	return run(t, append(append(cmd, pkg, "--", "-test.short"), args...)...)
}

func TestStdlibSuites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds standard-library test binaries")
	}
	for _, pkg := range suites.Fast {
		if only := os.Getenv("AMBER_STDTEST_PKG"); only != "" && only != pkg {
			continue
		}
		t.Run(strings.ReplaceAll(pkg, "/", "_"), func(t *testing.T) {
			var args []string
			if len(suites.Skips[pkg]) > 0 {
				args = append(args, "-test.skip", "^("+strings.Join(suites.Skips[pkg], "|")+")$")
			}
			r := stdTest(t, pkg, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "ok  \t"+pkg) {
				t.Errorf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestStdlibSuitesOnData runs the suites of suites.OnData (os, io/fs)
// with their temporary directories on the persistent /data: vmm test
// --disk on a fresh raw disk makes TMPDIR /data/tmp. What /data does not
// support (suites.DataSkips, each with its reason) is skipped.
func TestStdlibSuitesOnData(t *testing.T) {
	if testing.Short() {
		t.Skip("builds standard-library test binaries")
	}
	for _, pkg := range suites.OnData {
		t.Run(strings.ReplaceAll(pkg, "/", "_"), func(t *testing.T) {
			var args []string
			if skips := append(slices.Clone(suites.Skips[pkg]), suites.DataSkips[pkg]...); len(skips) > 0 {
				args = append(args, "-test.skip", "^("+strings.Join(skips, "|")+")$")
			}
			r := stdTestWith(t, []string{"--mem", "1G", "--disk", newDataDisk(t)}, pkg, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "ok  \t"+pkg) {
				t.Errorf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}
