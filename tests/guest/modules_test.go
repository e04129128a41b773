package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amberos/amber/tools/guestrun"
)

// Programs from third-party modules, fetched through the module proxy at
// pinned versions (GOMODCACHE keeps them between runs), built by vmm build
// and compared with the same program built natively.

const (
	gojqModule  = "github.com/itchyny/gojq"
	gojqVersion = "v0.12.17"
)

// A fresh module's main program, using gojq as a library.
const gojqMain = `package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/itchyny/gojq"
)

func main() {
	q, err := gojq.Parse(os.Args[1])
	if err != nil {
		fmt.Println("parse:", err)
		os.Exit(2)
	}
	var in any
	if err := json.Unmarshal([]byte(os.Args[2]), &in); err != nil {
		fmt.Println("input:", err)
		os.Exit(2)
	}
	iter := q.Run(in)
	for {
		v, ok := iter.Next()
		if !ok {
			break
		}
		b, _ := gojq.Marshal(v)
		fmt.Println(string(b))
	}
}
`

// goCmd runs the go command in dir as a user would in a fresh module.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// freshModule is `mkdir m && cd m && go mod init m`, a main.go, and
// `go get` of gojq at a pinned version.
func freshModule(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goCmd(t, dir, "mod", "init", "m")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(gojqMain), 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd(t, dir, "get", gojqModule+"@"+gojqVersion)
	return dir
}

// native builds pkg in dir for the host and runs it with args.
func native(t *testing.T, dir, pkg string, args ...string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "native")
	cmd := exec.Command("go", "build", "-o", exe, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("native go build %s: %v\n%s", pkg, err, out)
	}
	out, err := exec.Command(exe, args...).Output()
	if err != nil {
		t.Fatalf("native %s: %v\n%s", pkg, err, out)
	}
	return string(out)
}

// vmmBuild runs vmm build in dir and returns the image.
func vmmBuild(t *testing.T, dir, pkg string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "prog.img")
	cmd := exec.Command(vmmBin, "build", "-o", img, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vmm build %s (in %s): %v\n%s", pkg, dir, err, out)
	}
	return img
}

// sameAsNative boots img with args and compares its output with want.
func sameAsNative(t *testing.T, img, want string, args ...string) {
	t.Helper()
	r := run(t, append([]string{"run", "--timeout", "300s", img, "--"}, args...)...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != strings.TrimSpace(want) {
		t.Errorf("guest: exit status %d, stdout:\n%s\nstderr:\n%s\nnative stdout:\n%s", r.code, r.stdout, r.stderr, want)
	}
}

// Issue 9, item 1: a module made with go mod init (whose go line is the
// toolchain's full version) and a go get builds.
func TestFreshModuleWithDependency(t *testing.T) {
	needGuest(t)
	dir := freshModule(t)
	args := []string{`.a | map(. * 2) | add`, `{"a": [1, 2, 3.5]}`}
	want := native(t, dir, ".", args...)
	sameAsNative(t, vmmBuild(t, dir, "."), want, args...)
}

// Issue 9, item 2: packages in the module cache build, as go build and
// go install build them: a dependency's command from inside a module,
// IMPORT/PATH@VERSION from outside any module, and a dependency's tests.
func TestBuildModuleCachePackage(t *testing.T) {
	needGuest(t)
	dir := freshModule(t)
	cmd := gojqModule + "/cmd/gojq"
	goCmd(t, dir, "get", cmd+"@"+gojqVersion)
	args := []string{"-n", "-c", `[range(4)] | map(. * 3) | {sum: add, n: length}`}
	want := native(t, dir, cmd, args...)
	if !strings.Contains(want, `"sum":18`) {
		t.Fatalf("native gojq printed %q", want)
	}
	t.Run("dependency", func(t *testing.T) {
		sameAsNative(t, vmmBuild(t, dir, cmd), want, args...)
	})
	t.Run("versioned", func(t *testing.T) {
		sameAsNative(t, vmmBuild(t, t.TempDir(), cmd+"@"+gojqVersion), want, args...)
	})
	t.Run("test", func(t *testing.T) {
		// A dependency's own tests (timefmt-go's are small), as go test runs them.
		c := exec.Command(vmmBin, "test", "--timeout", "300s", "github.com/itchyny/timefmt-go")
		c.Dir = dir
		out, err := c.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ok  \tgithub.com/itchyny/timefmt-go") {
			t.Errorf("vmm test of a dependency: %v\n%s", err, out)
		}
	})
}

// A test binary that does not compile is a failed build (exit 1), not an
// interrupted one (130).
func TestTestBuildFailure(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":      "module example.com/broken\n\ngo 1.26\n",
		"b.go":        "package broken\n",
		"b_test.go":   "package broken\n\nfunc TestX(t *testing.T) { undefinedCall() }\n",
		"doc_test.go": "package broken\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := exec.Command(vmmBin, "test", ".")
	c.Dir = dir
	out, err := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "[build failed]") || strings.Contains(string(out), "interrupted") {
		t.Errorf("vmm test: %v, want exit status 1\n%s", err, out)
	}
}

// Issue 9, item 3: vmm test packs the package's module, so tests reading
// ../testdata or ../../testdata find it; --pack-max bounds what is packed.
func TestTestPacksModule(t *testing.T) {
	needGuest(t)
	r := run(t, "test", "--timeout", "300s", "./testdata/multipkg/greet/words", "--", "-test.v")
	if r.code != 0 || !strings.Contains(r.stdout, "--- PASS: TestSharedTestdata") {
		t.Errorf("vmm test ./testdata/multipkg/greet/words: exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "test", "--timeout", "300s", "--pack-max", "1K", "./testdata/multipkg/greet")
	if r.code != 1 || !strings.Contains(r.stderr, "packing only the package's directory") || !strings.Contains(r.stdout, "../testdata/greeting.txt: no such file") {
		t.Errorf("vmm test --pack-max 1K: exit status %d, want 1 with a warning\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// Issue 9, item 4: images carry the time zone database; TZ sets the local
// time zone, which is UTC without it.
func TestTimeZones(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string
	}{
		{nil, "local: 2024-07-01 12:00 UTC +0000\n"},
		{[]string{"TZ=Asia/Tokyo"}, "local: 2024-07-01 21:00 JST +0900\n"},
	} {
		r := runGuest(t, "./testdata/timezones", guestrun.Config{Env: c.env})
		expect(t, r, 0, "new york: 2024-07-01 08:00 EDT -0400\n", c.want)
	}
}
