package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kvmPackages are the packages whose tests call needKVM: the VMM's own.
var kvmPackages = []string{"vmm", "tests/guest"}

// imageHelpers are the test helpers that take an image's package as
// their second argument (relative to the test's package).
var imageHelpers = map[string]bool{"image": true, "testImage": true, "runImage": true, "runGuest": true}

// nativeHelpers are the test helpers that take, as their second
// argument, a package a benchmark runs natively beside the guest (its
// baseline): built on the host into the share's native/ directory.
var nativeHelpers = map[string]bool{"nativeBin": true}

// kvmTests are the tests of one package that need KVM, and the images
// (packages, relative to the module) they boot; with -bench, the
// benchmarks that need KVM instead, and the native baselines they run.
type kvmTests struct {
	Pkg     string // relative to the module
	Tests   []string
	Images  []string
	Natives []string
	Bench   bool // Tests are benchmarks
}

// findKVMTests reads the test files of pkg (relative to root) and returns
// its tests that call needKVM, anywhere in their body, with the image
// packages those tests name as literals, themselves or through the
// package's functions they call (runDebugDev(t) naming testdata/debugdev).
func findKVMTests(root, pkg string, bench bool) (kvmTests, error) {
	kt := kvmTests{Pkg: pkg, Bench: bench}
	prefix := "Test"
	if bench {
		prefix = "Benchmark"
	}
	files, err := filepath.Glob(filepath.Join(root, pkg, "*_test.go"))
	if err != nil || len(files) == 0 {
		return kt, fmt.Errorf("no test files in %s", pkg)
	}
	funcs := map[string]*ast.FuncDecl{}
	var tests []string
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			return kt, err
		}
		for _, d := range af.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Body != nil {
				funcs[fd.Name.Name] = fd
				if strings.HasPrefix(fd.Name.Name, prefix) && fd.Name.Name != "TestMain" {
					tests = append(tests, fd.Name.Name)
				}
			}
		}
	}
	imgs, natives := map[string]bool{}, map[string]bool{}
	for _, name := range tests {
		kvm := false
		lits, nlits := map[string]bool{}, map[string]bool{}
		seen := map[string]bool{}
		var walk func(fd *ast.FuncDecl, top bool)
		walk = func(fd *ast.FuncDecl, top bool) {
			seen[fd.Name.Name] = true
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				id, ok := call.Fun.(*ast.Ident)
				if !ok {
					return true
				}
				if id.Name == "needKVM" && top {
					kvm = true
				}
				if (imageHelpers[id.Name] || nativeHelpers[id.Name]) && len(call.Args) >= 2 {
					if bl, ok := call.Args[1].(*ast.BasicLit); ok && bl.Kind == token.STRING {
						if s, err := strconv.Unquote(bl.Value); err == nil {
							if nativeHelpers[id.Name] {
								nlits[path.Join(pkg, s)] = true
							} else {
								lits[path.Join(pkg, s)] = true
							}
						}
					}
				}
				if callee := funcs[id.Name]; callee != nil && !seen[id.Name] {
					walk(callee, false)
				}
				return true
			})
		}
		walk(funcs[name], true)
		if kvm {
			kt.Tests = append(kt.Tests, name)
			for l := range lits {
				imgs[l] = true
			}
			for l := range nlits {
				natives[l] = true
			}
		}
	}
	for i := range imgs {
		kt.Images = append(kt.Images, i)
	}
	for n := range natives {
		kt.Natives = append(kt.Natives, n)
	}
	sort.Strings(kt.Tests)
	sort.Strings(kt.Images)
	sort.Strings(kt.Natives)
	return kt, nil
}

// testBinary is the name of pkg's test binary in the share.
func testBinary(pkg string) string { return strings.ReplaceAll(pkg, "/", "_") + ".test" }

// Options configure a run of the nested stage.
type Options struct {
	Root    string // the module's directory
	Cache   string // where prepared Linuxes are kept
	Timeout time.Duration
	Run     *regexp.Regexp // only the KVM-only tests it matches; nil: all
	Bench   *regexp.Regexp // run the KVM-only benchmarks it matches (once each) instead of tests
	Log     io.Writer      // progress and figures
	Console io.Writer      // the nested Linux's console
}

// TestResult is one test's outcome in the nested Linux.
type TestResult struct {
	Pkg, Name, Outcome string // Outcome: PASS, FAIL or SKIP
	Time               time.Duration
	Line               string // a benchmark's result line, with its figures
}

// Report is what a run of the nested stage did and how long it took.
type Report struct {
	Prepare, Build, Up, Total time.Duration
	Packages                  []string
	Results                   []TestResult
	Status                    int
	Console                   string // all the nested Linux printed
}

// Failures lists what went wrong: a test that failed or skipped, or was
// expected and never reported.
func (r *Report) Failures(want []kvmTests) []string {
	var bad []string
	passed := map[string]bool{}
	for _, t := range r.Results {
		if t.Outcome == "PASS" {
			passed[t.Pkg+" "+t.Name] = true
		} else {
			bad = append(bad, fmt.Sprintf("%s %s: %s", t.Pkg, t.Name, t.Outcome))
		}
	}
	for _, k := range want {
		for _, t := range k.Tests {
			if !passed[k.Pkg+" "+t] {
				bad = append(bad, fmt.Sprintf("%s %s: no result", k.Pkg, t))
			}
		}
	}
	if r.Status != 0 && len(bad) == 0 {
		bad = append(bad, fmt.Sprintf("run.sh exited with status %d", r.Status))
	}
	return bad
}

// prebuild fills share with what the tests need, built on the host (the
// nested Linux has no Go toolchain, and building there would take
// forever): the vmm binary, the images, and the test binaries, in the
// layout the tests' helpers read through AMBER_TEST_PREBUILT.
func prebuild(root, share string, want []kvmTests) error {
	env := append(os.Environ(), "CGO_ENABLED=0")
	gocmd := func(args ...string) error {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = root, env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return nil
	}
	// As the Makefile builds them: static, no huge pages on the heap.
	const ldflags = "-ldflags=-X=runtime.godebugDefault=disablethp=1"
	vmmBin := filepath.Join(share, "bin", "vmm")
	if err := gocmd("build", ldflags, "-o", vmmBin, "./tools/vmm"); err != nil {
		return err
	}
	// The user-mode network's process, which vmm finds next to itself.
	if err := gocmd("build", ldflags, "-o", filepath.Join(share, "bin", "vmm-net"), "./tools/vmmnet"); err != nil {
		return err
	}
	imgs := map[string]bool{}
	for _, k := range want {
		if err := gocmd("test", "-c", "-o", filepath.Join(share, "test", testBinary(k.Pkg)), "./"+k.Pkg); err != nil {
			return err
		}
		for _, n := range k.Natives {
			if err := gocmd("build", "-o", filepath.Join(share, "native", n), "./"+n); err != nil {
				return err
			}
		}
		for _, img := range k.Images {
			imgs[img] = true
		}
	}
	// Two builds at a time: linking is mostly one thread.
	errs := make(chan error, len(imgs))
	sem := make(chan struct{}, 2)
	for img := range imgs {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command(vmmBin, "build", "-o", filepath.Join(share, "img", img+".img"), "./"+img)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("vmm build %s: %v\n%s", img, err, b)
				return
			}
			errs <- nil
		}()
	}
	var first error
	for range imgs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runScript is the share's run.sh: each package's KVM tests, verbose.
// Benchmarks read the vmm binary, images and native baselines from a
// copy in the nested Linux's tmpfs: over the 9p share every exec and
// image read went to the host (the share has no page cache), which a
// host running vmm does not pay and which dominated the nested
// `vmm run` and native figures (docs/benchmarks.md).
func runScript(want []kvmTests) string {
	var b strings.Builder
	prebuilt := "export AMBER_TEST_PREBUILT=/share\n"
	if slices.ContainsFunc(want, func(k kvmTests) bool { return k.Bench }) {
		prebuilt = "mkdir -p /tmp/prebuilt && cp -a /share/bin /share/img /tmp/prebuilt/ && { [ ! -d /share/native ] || cp -a /share/native /tmp/prebuilt/; } && export AMBER_TEST_PREBUILT=/tmp/prebuilt || exit 1\n"
	}
	fmt.Fprintf(&b, "echo %s\n%sstatus=0\n", runMarker, prebuilt)
	for _, k := range want {
		run := "^(" + strings.Join(k.Tests, "|") + ")$"
		dir := "/tmp/" + strings.ReplaceAll(k.Pkg, "/", "_")
		flags := "-test.v -test.count=1 -test.timeout=25m -test.run '" + run + "'"
		if k.Bench {
			flags = "-test.v -test.timeout=80m -test.run '^$' -test.benchtime 1x -test.bench '" + run + "'"
		}
		fmt.Fprintf(&b, "echo 'nestkvm: package %s'\nmkdir -p %s && cd %s && /share/test/%s %s || status=1\n",
			k.Pkg, dir, dir, testBinary(k.Pkg), flags)
	}
	b.WriteString("exit $status\n")
	return b.String()
}

var (
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)
	benchLine  = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+\d`)
)

// parseResults reads go test -v output as run.sh prints it.
func parseResults(out string) []TestResult {
	var rs []TestResult
	pkg := ""
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "nestkvm: package "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if m := benchLine.FindStringSubmatch(line); m != nil {
			rs = append(rs, TestResult{Pkg: pkg, Name: m[1], Outcome: "PASS", Line: strings.TrimSpace(line)})
			continue
		}
		m := resultLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, _ := time.ParseDuration(m[3] + "s")
		rs = append(rs, TestResult{Pkg: pkg, Name: m[2], Outcome: m[1], Time: d})
	}
	return rs
}

// Run runs the KVM-only tests of the VMM in the nested Linux and reports
// how they did; err is for the stage failing to run at all.
func Run(ctx context.Context, o Options) (*Report, []kvmTests, error) {
	start := time.Now()
	var want []kvmTests
	for _, p := range kvmPackages {
		k, err := findKVMTests(o.Root, p, o.Bench != nil)
		if err != nil {
			return nil, nil, err
		}
		if o.Bench != nil {
			k.Tests = slices.DeleteFunc(k.Tests, func(t string) bool { return !o.Bench.MatchString(t) })
		} else if o.Run != nil {
			k.Tests = slices.DeleteFunc(k.Tests, func(t string) bool { return !o.Run.MatchString(t) })
		}
		if len(k.Tests) > 0 {
			want = append(want, k)
		}
	}
	if len(want) == 0 {
		return nil, nil, errors.New("no test that calls needKVM (and matches -run): nothing to run nested")
	}
	r := &Report{}
	l, err := Prepare(o.Cache, o.Log)
	if err != nil {
		return nil, want, err
	}
	r.Packages = l.Packages
	r.Prepare = time.Since(start)

	t0 := time.Now()
	share, err := os.MkdirTemp("", "nestkvm-share-")
	if err != nil {
		return nil, want, err
	}
	defer os.RemoveAll(share)
	if err := prebuild(o.Root, share, want); err != nil {
		return nil, want, err
	}
	if err := os.WriteFile(filepath.Join(share, "run.sh"), []byte(runScript(want)), 0o755); err != nil {
		return nil, want, err
	}
	r.Build = time.Since(t0)

	var console bytes.Buffer
	var cw io.Writer = &console
	if o.Console != nil {
		cw = io.MultiWriter(&console, o.Console)
	}
	br, err := Boot(ctx, BootConfig{Linux: l, Share: share, Memory: "2G", Timeout: o.Timeout, Console: cw})
	r.Up, r.Status = br.Up, br.Status
	r.Console = console.String()
	r.Results = parseResults(r.Console)
	r.Total = time.Since(start)
	if err != nil {
		return r, want, fmt.Errorf("%v\nconsole:\n%s", err, tail(console.String(), 60))
	}
	return r, want, nil
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Print writes the report's figures.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "nestkvm: %s\n", strings.Join(r.Packages, " "))
	fmt.Fprintf(w, "nestkvm: prepare %.1fs, build on the host %.1fs, nested Linux up %.1fs, total %.1fs\n",
		r.Prepare.Seconds(), r.Build.Seconds(), r.Up.Seconds(), r.Total.Seconds())
	for _, t := range r.Results {
		if t.Line != "" {
			fmt.Fprintf(w, "nestkvm: %s %s\n", t.Pkg, t.Line)
			continue
		}
		fmt.Fprintf(w, "nestkvm: %-4s %-9s %-40s %6.1fs\n", t.Outcome, t.Pkg, t.Name, t.Time.Seconds())
	}
}
