package elfpatch

import (
	"github.com/amberos/amber/boot/elfnote"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// binDir holds the test programs, built once per test binary run and shared
// by the tests; tests that modify a program work on a copy.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "elfpatch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

var builds sync.Map // key -> *buildResult

// goBuild builds ./testdata/<prog> the way vmm build does (static
// linux/amd64, no cgo), with extra go build flags, and returns the path of
// the shared, read-only result.
func goBuild(t testing.TB, prog string, flags ...string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found in PATH")
	}
	key := fmt.Sprint(prog, flags)
	v, _ := builds.LoadOrStore(key, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		out := filepath.Join(binDir, fmt.Sprintf("%s-%d", prog, len(flags)))
		args := append([]string{"build", "-o", out}, flags...)
		args = append(args, "./testdata/"+prog)
		cmd := exec.Command(gobin, args...)
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %v: %v\n%s", args, err, msg)
			return
		}
		b.path = out
	})
	if b.err != nil {
		if strings.Contains(b.err.Error(), "no required module provides") {
			// testdata/xsys needs golang.org/x/sys in go.mod, which go mod
			// tidy keeps only while something outside testdata imports it.
			t.Skipf("cannot build %s: %v", prog, b.err)
		}
		t.Fatal(b.err)
	}
	return b.path
}

// copyProg returns a private, writable copy of a built test program.
func copyProg(t testing.TB, prog string, flags ...string) string {
	t.Helper()
	src := goBuild(t, prog, flags...)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), prog)
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found in PATH (Debian package binutils)", name)
	}
	return p
}

func parseNotes(buf []byte, align uint64) ([]Note, error) {
	return elfnote.Parse(buf, align)
}
