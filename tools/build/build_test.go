package build

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	amber "github.com/amberos/amber"
)

func TestRewriteSyscalls(t *testing.T) {
	src := "TEXT ·f(SB),NOSPLIT,$0\n\tMOVL\t$1, AX\n\tSYSCALL\n\tSYSCALL // comment\n\t// SYSCALL in a comment\n\tMOVQ\t$SYSCALL_X, AX\nlabel:\tSYSCALL_NOT\n\tRET\n"
	out, n := rewriteSyscalls([]byte(src))
	if n != 2 {
		t.Fatalf("rewrote %d sites, want 2:\n%s", n, out)
	}
	call := "CALL\tgithub·com∕amberos∕amber∕kernel·syscallEntry(SB)"
	if strings.Count(string(out), call) != 2 || strings.Contains(string(out), "\tSYSCALL\n") {
		t.Errorf("rewritten source:\n%s", out)
	}
	if !strings.Contains(string(out), call+" // comment") || !strings.Contains(string(out), "// SYSCALL in a comment") {
		t.Errorf("comments not kept:\n%s", out)
	}
}

func TestReleaseOf(t *testing.T) {
	for in, want := range map[string]string{"go1.26.8": "go1.26", "go1.26": "go1.26", "go1.27rc1": "go1.27", "go1.26.0-X:foo": "go1.26"} {
		if got := releaseOf(in); got != want {
			t.Errorf("releaseOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsStdSymbol(t *testing.T) {
	for sym, want := range map[string]bool{
		"runtime.write1.abi0":                          true,
		"internal/runtime/syscall/linux.Syscall6":      true,
		"syscall.rawVforkSyscall.abi0":                 true,
		"time.now":                                     true,
		"golang.org/x/sys/unix.RawSyscallNoError.abi0": false,
		"github.com/amberos/amber/kernel.syscallEntry": false,
		"main.rawSyscall.abi0":                         false, // the program's own assembly: served by the trap path
		"":                                             false,
	} {
		if got := isStdSymbol(sym); got != want {
			t.Errorf("isStdSymbol(%q) = %v, want %v", sym, got, want)
		}
	}
}

// The overlay generated from this machine's GOROOT finds exactly the
// expected sites, and no SYSCALL survives in the copies.
func TestOverlayFromGOROOT(t *testing.T) {
	dir := t.TempDir()
	replace, err := writeOverlay(runtime.GOROOT(), runtime.Version(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// The rewritten files, and the file added to exithook.
	if len(replace) != len(syscallFiles)+1 {
		t.Fatalf("overlay replaces %d files, want %d", len(replace), len(syscallFiles)+1)
	}
	added := filepath.Join(runtime.GOROOT(), "src", "internal", "runtime", "exithook", "amber_linkname.go")
	if b, err := os.ReadFile(replace[added]); err != nil || !strings.Contains(string(b), "//go:linkname Add\n") {
		t.Fatalf("the exithook file: %v %q", err, b)
	}
	delete(replace, added)
	calls := 0
	for orig, repl := range replace {
		if _, err := os.Stat(orig); err != nil {
			t.Errorf("overlay names a missing GOROOT file: %v", err)
		}
		b, err := os.ReadFile(repl)
		if err != nil {
			t.Fatal(err)
		}
		if _, n := rewriteSyscalls(b); n != 0 {
			t.Errorf("%s still has %d SYSCALL lines", repl, n)
		}
		calls += strings.Count(string(b), "kernel·syscallEntry(SB)")
	}
	if calls != expectedSites[releaseOf(runtime.Version())] {
		t.Errorf("%d calls of the kernel entry, want %d", calls, expectedSites[releaseOf(runtime.Version())])
	}
	if _, err := writeOverlay(runtime.GOROOT(), "go1.99.1", dir); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("unknown Go version: err = %v", err)
	}
	// A runtime whose site count changed is refused.
	fake := t.TempDir()
	for _, rel := range syscallFiles {
		b, _ := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", rel))
		p := filepath.Join(fake, "src", rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, append(b, "\tSYSCALL\n"...), 0o644)
	}
	if _, err := writeOverlay(fake, runtime.Version(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "expected 46") {
		t.Errorf("changed runtime: err = %v", err)
	}
}

// The kernel is linked into programs of any module from the source
// embedded in vmm, as a module with no requirements: it must import only
// the standard library and itself. So must the persistent file system's
// service (kernel/datafs/mount), which every program links too.
func TestGuestImportsOnlyStd(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/amberos/amber/kernel", "github.com/amberos/amber/kernel/datafs/mount").Output()
	if err != nil {
		t.Fatal(err)
	}
	embedded := map[string]bool{}
	fs.WalkDir(amber.GuestSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			embedded[amber.ModulePath+"/"+path.Dir(p)] = true
		}
		return nil
	})
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, amber.ModulePath+"/") {
			t.Errorf("the kernel depends on %s, which is not in the standard library", p)
		}
		if !embedded[p] {
			t.Errorf("the kernel depends on %s, which is not embedded in vmm (amber.go)", p)
		}
	}
}

func TestExtractGuestSource(t *testing.T) {
	cache := t.TempDir()
	dir, err := extractGuestSource(cache)
	if err != nil {
		t.Fatal(err)
	}
	again, err := extractGuestSource(cache)
	if err != nil || again != dir {
		t.Fatalf("second extraction: %q, %v; want %q", again, err, dir)
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.Contains(string(mod), "module "+amber.ModulePath) {
		t.Errorf("go.mod = %q, %v", mod, err)
	}
	// It requires what the network service needs, and nothing else of
	// this module's requirements (the VMM's own).
	for _, m := range amber.GuestRequires {
		if !strings.Contains(string(mod), "\t"+m+" v") {
			t.Errorf("go.mod does not require %s:\n%s", m, mod)
		}
	}
	if strings.Contains(string(mod), "gokvm") || strings.Contains(string(mod), "bbolt") {
		t.Errorf("go.mod requires the VMM's modules:\n%s", mod)
	}
	for _, f := range []string{"kernel/entry_amd64.s", "kernel/syscall.go", "boot/boot.go", "kernel/netsvc/netsvc.go", "kernel/service/service.go", "go.sum"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// It builds on its own, as a module.
	cmd := exec.Command("go", "build", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the extracted kernel does not build: %v\n%s", err, out)
	}
}

func TestAsmSymbol(t *testing.T) {
	if got := asmSymbol("example.com/a/b", "F"); got != "example·com∕a∕b·F" {
		t.Errorf("asmSymbol = %q", got)
	}
	b, _ := json.Marshal(asmSymbol("x.y/z", "f"))
	if !strings.Contains(string(b), "·") {
		t.Errorf("json %s", b)
	}
}

// The generated go.work's go line is the newest of its modules' (a fresh
// `go mod init` writes the toolchain's full version, e.g. 1.26.8).
func TestWorkspaceGoLine(t *testing.T) {
	mod := func(goLine string) string {
		d := t.TempDir()
		content := "module example.com/m\n"
		if goLine != "" {
			content += "\ngo " + goLine + " // comment\n"
		}
		if err := os.WriteFile(filepath.Join(d, "go.mod"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, c := range []struct {
		lines []string
		want  string
	}{
		{[]string{"1.26"}, "go 1.26\n"},
		{[]string{"1.26.8", "1.26"}, "go 1.26.8\n"},
		{[]string{"1.21", ""}, "go 1.26\n"},
		{[]string{"1.26.1", "1.27rc1", "1.26"}, "go 1.27rc1\n"},
	} {
		var dirs []string
		for _, l := range c.lines {
			dirs = append(dirs, mod(l))
		}
		w, err := workspace("go1.26.8", dirs...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w, "\n"+c.want) {
			t.Errorf("go lines %q: go.work\n%s\nwant %q", c.lines, w, c.want)
		}
		for _, d := range dirs {
			if !strings.Contains(w, "\t"+`"`+d+`"`+"\n") {
				t.Errorf("go.work does not use %s:\n%s", d, w)
			}
		}
	}
	if _, err := workspace("go1.26.8", mod("one.two")); err == nil {
		t.Error("an invalid go line was accepted")
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		path, dir string
		want      bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"/x/..a/b", "/x", true},
		{"/root/go/pkg/mod/x@v1/cmd", "/root/go/pkg/mod", true},
	} {
		if got := within(c.path, c.dir); got != c.want {
			t.Errorf("within(%q, %q) = %v, want %v", c.path, c.dir, got, c.want)
		}
	}
}

// A module of the module cache (read-only files) is copied once per
// version, whole, and the copy is reused.
func TestCopyModule(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mod@v1.0.0")
	for name, content := range map[string]string{"go.mod": "module example.com/mod\n", "cmd/x/main.go": "package main\n", "testdata/d.txt": "data"} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	cache := t.TempDir()
	dst, err := copyModule(cache, "example.com/mod", "v1.0.0", src)
	if err != nil {
		t.Fatal(err)
	}
	if within(dst, src) || !within(dst, cache) {
		t.Errorf("copy at %s", dst)
	}
	for _, name := range []string{"go.mod", "cmd/x/main.go", "testdata/d.txt"} {
		if _, err := os.Stat(filepath.Join(dst, name)); err != nil {
			t.Error(err)
		}
	}
	// The copy's directories take a new file (the overlay's).
	if err := os.WriteFile(filepath.Join(dst, "cmd", "x", "probe"), nil, 0o644); err != nil {
		t.Errorf("the copy is not writable: %v", err)
	}
	again, err := copyModule(cache, "example.com/mod", "v1.0.0", filepath.Join(t.TempDir(), "missing"))
	if err != nil || again != dst {
		t.Errorf("second copy: %q, %v; want the first, %q", again, err, dst)
	}
}

func TestResolveVersionRefusesBadArguments(t *testing.T) {
	for _, arg := range []string{"example.com/x@", "@v1.0.0", "./cmd@v1.0.0", "/abs/cmd@v1.0.0", "example.com/x@v1@v2"} {
		if _, err := resolveVersion(t.Context(), t.TempDir(), os.Environ(), arg); err == nil || !strings.Contains(err.Error(), "IMPORT/PATH@VERSION") {
			t.Errorf("resolveVersion(%q): err = %v", arg, err)
		}
	}
}

// Concurrent writers of one file with new content (two builds after an
// upgrade) all succeed: each has its own temporary file.
func TestWriteIfChangedConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.go")
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- writeIfChanged(p, []byte("package x\n")) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "package x\n" {
		t.Errorf("content %q, %v", b, err)
	}
	if m, _ := filepath.Glob(p + ".*"); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
