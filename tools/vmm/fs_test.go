package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amberos/amber/tools/build"
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
	needKVM(t)
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

// stdTest builds the standard library's own tests of pkg into an image,
// packing the package's directory (for its testdata) into the guest's
// root, which is the tests' working directory, and runs them.
func stdTest(t *testing.T, pkg string, args ...string) result {
	t.Helper()
	needKVM(t)
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("AMBER_STDTEST_DIR") // keeps the images, for debugging
	if dir == "" {
		dir = t.TempDir()
	}
	img := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "_")+".test.img")
	pkgDir := filepath.Join(strings.TrimSpace(string(goroot)), "src", pkg)
	_, err = build.Build(context.Background(), build.Options{
		Package: pkg, Output: img, Test: true, Files: pkgDir, FilesAt: pkgDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	return run(t, append([]string{"run", "--timeout", "120s", "--mem", "512M", img, "--", "-test.short"}, args...)...)
}

// stdSuites are the standard-library test suites that run in the guest,
// with the tests that cannot pass yet skipped (and why).
var stdSuites = []struct {
	pkg   string
	skip  []string
	flaky string // when set, the suite runs only with AMBER_STDTEST_ALL=1
}{
	// The fastest of `make compat`'s packages run in make test too.
	{"container/heap", nil, ""},
	{"container/list", nil, ""},
	{"errors", nil, ""},
	{"encoding/hex", nil, ""},
	{"encoding/csv", nil, ""},
	{"unicode/utf8", nil, ""},
	{"crypto/aes", nil, ""},
	{"io/fs", nil, ""},
	{"path/filepath", []string{
		"TestBug3486", // walks $GOROOT/src/unicode, which is not packed
	}, ""},
	{"os", []string{
		// Sockets are not implemented yet.
		"TestLargeCopyViaNetwork", "TestSpliceFile", "TestSendFile", "TestGetPollFDAndNetwork",
		// Processes: fork/exec, pidfd and os.Executable's re-exec of the test binary.
		"TestOpenFileNonBlocking", "TestFileChdirTestlog", "TestPidfdLeak", "TestStdPipe",
		"TestReadNonblockingFd", "TestProcessWithHandleLinux", "TestKillFindProcess", "TestGetppid",
		"TestKillStartProcess", "TestStatStdin", "TestStartProcess", "TestExecutable",
		// Need the host's /usr/bin.
		"TestChdirAndGetwd", "TestReaddirnamesOneAtATime",
	}, ""},
}

func TestStdlibSuites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds standard-library test binaries")
	}
	for _, tc := range stdSuites {
		if only := os.Getenv("AMBER_STDTEST_PKG"); only != "" && only != tc.pkg {
			continue
		}
		t.Run(strings.ReplaceAll(tc.pkg, "/", "_"), func(t *testing.T) {
			if tc.flaky != "" && os.Getenv("AMBER_STDTEST_ALL") != "1" {
				t.Skipf("flaky for now: %s; AMBER_STDTEST_ALL=1 runs it", tc.flaky)
			}
			var args []string
			if len(tc.skip) > 0 {
				args = append(args, "-test.skip", "^("+strings.Join(tc.skip, "|")+")$")
			}
			r := stdTest(t, tc.pkg, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "PASS") {
				t.Errorf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}
