package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/tools/qemu"
	"github.com/amberos/amber/vmm"
)

// TestNestedKVM runs the VMM's KVM-only tests on KVM nested under QEMU's
// emulator when this host has no /dev/kvm (where it has one, those tests
// run directly and this is not needed). It fails if any of them fails or
// skips there.
func TestNestedKVM(t *testing.T) {
	if err := vmm.KVMAvailable(); err == nil {
		t.Skip("/dev/kvm works here: the KVM-only tests run directly")
	}
	if err := qemu.Available(); err != nil {
		t.Fatalf("the KVM-only tests run nested under QEMU here: %v", err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cache, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	r, want, err := Run(context.Background(), Options{Root: root, Cache: cache, Timeout: 40 * time.Minute, Log: &log})
	if log.Len() > 0 {
		t.Log(log.String())
	}
	if r != nil {
		var b strings.Builder
		r.Print(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if bad := r.Failures(want); len(bad) > 0 {
		t.Errorf("on nested KVM:\n%s\n\nthe nested console:\n%s", strings.Join(bad, "\n"), r.Console)
	}
}

// The KVM-only tests are found in the source, with the images they name.
func TestFindKVMTests(t *testing.T) {
	k, err := findKVMTests("../..", "tests/guest", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TestCrashReport", "TestStdin", "TestCtrlCLosesNothing", "TestPVHNoteMissingOrCorrupt"} {
		if !slices.Contains(k.Tests, name) {
			t.Errorf("tests %v lack %s", k.Tests, name)
		}
	}
	for _, name := range []string{"TestHello", "TestMain", "TestTorture"} {
		if slices.Contains(k.Tests, name) {
			t.Errorf("tests %v include %s, which does not need KVM", k.Tests, name)
		}
	}
	for _, img := range []string{"apps/hello", "tests/guest/testdata/crashud2", "tests/guest/testdata/copyio"} {
		if !slices.Contains(k.Images, img) {
			t.Errorf("images %v lack %s", k.Images, img)
		}
	}
	k, err = findKVMTests("../..", "vmm", false)
	if err != nil || !slices.Contains(k.Tests, "TestKicksLoseNothing") || !slices.Contains(k.Images, "tests/guest/testdata/copyio") || !slices.Contains(k.Images, "vmm/testdata/debugdev") {
		t.Errorf("vmm: %+v, %v", k, err)
	}
	// -bench: the benchmarks that need KVM, with their native baselines.
	k, err = findKVMTests("../..", "tests/guest", true)
	if err != nil || !slices.Contains(k.Tests, "BenchmarkDataKVM") || slices.Contains(k.Tests, "BenchmarkDataSeqTCG") || !slices.Contains(k.Natives, "tests/guest/testdata/datafs") || !slices.Contains(k.Images, "tests/guest/testdata/datafs") {
		t.Errorf("benchmarks: %+v, %v", k, err)
	}
	if s := runScript([]kvmTests{k}); !strings.Contains(s, "-test.run '^$' -test.benchtime 1x -test.bench '^(") || !strings.Contains(s, "AMBER_TEST_PREBUILT=/tmp/prebuilt") {
		t.Errorf("run.sh for benchmarks (the prebuilt files copied to tmpfs):\n%s", s)
	}
	if s := runScript([]kvmTests{{Pkg: "vmm", Tests: []string{"TestX"}}}); !strings.Contains(s, "AMBER_TEST_PREBUILT=/share\n") {
		t.Errorf("run.sh for tests (the prebuilt files read from the share):\n%s", s)
	}
	rs := parseResults("nestkvm: package tests/guest\nBenchmarkDataKVM   \t       1\t12345 ns/op\t 3.5 guest-write-MB/s\n")
	if len(rs) != 1 || rs[0].Name != "BenchmarkDataKVM" || !strings.Contains(rs[0].Line, "guest-write-MB/s") {
		t.Errorf("benchmark line parsed as %+v", rs)
	}
}

// An image named in a helper the test calls is built too; a test that
// does not call needKVM is not run.
func TestFindKVMTestsThroughHelpers(t *testing.T) {
	dir := t.TempDir()
	src := `package p

func runDev(t *testing.T) string { return run(t, image(t, "testdata/dev")) }
func run(t *testing.T, img string) string { return runDev(t) }

func TestDev(t *testing.T) {
	needKVM(t)
	runDev(t)
}

func TestOther(t *testing.T) { image(t, "testdata/other") }
`
	if err := os.MkdirAll(filepath.Join(dir, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p", "x_test.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := findKVMTests(dir, "p", false)
	if err != nil || !slices.Equal(k.Tests, []string{"TestDev"}) || !slices.Equal(k.Images, []string{"p/testdata/dev"}) {
		t.Errorf("%+v, %v; want TestDev and p/testdata/dev", k, err)
	}
}

func TestParseResults(t *testing.T) {
	out := "\x1bc.nestkvm: running\nnestkvm: package vmm\n=== RUN   TestA\n--- PASS: TestA (8.12s)\nPASS\n" +
		"nestkvm: package tests/guest\n=== RUN   TestB\n--- FAIL: TestB (0.50s)\n    --- SKIP: TestB/sub_test (0.00s)\n" + statusMarker + "1\n"
	got := parseResults(out)
	want := []TestResult{
		{"vmm", "TestA", "PASS", 8120 * time.Millisecond, ""},
		{"tests/guest", "TestB", "FAIL", 500 * time.Millisecond, ""},
		{"tests/guest", "TestB/sub_test", "SKIP", 0, ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	r := &Report{Results: got, Status: 1}
	bad := r.Failures([]kvmTests{{Pkg: "vmm", Tests: []string{"TestA", "TestC"}}})
	if len(bad) != 3 || !strings.Contains(strings.Join(bad, "\n"), "vmm TestC: no result") {
		t.Errorf("failures %q", bad)
	}
}

// A module's dependencies load first, each once; built-in ones need no file.
func TestModuleOrder(t *testing.T) {
	deps := map[string][]string{"kvm_amd": {"kvm", "ccp"}, "kvm": {"irqbypass"}, "ccp": nil, "irqbypass": nil, "p9": {"kvm"}}
	files := map[string]string{}
	for m := range deps {
		if m != "ccp" {
			files[m] = m + ".ko"
		}
	}
	read := func(f string) ([]byte, error) { return []byte(strings.TrimSuffix(f, ".ko")), nil }
	depends := func(ko []byte) ([]string, error) { return deps[string(ko)], nil }
	order, _, err := moduleOrder(files, read, depends, map[string]bool{"ccp": true}, []string{"kvm_amd", "p9"})
	if err != nil || !slices.Equal(order, []string{"irqbypass", "kvm", "kvm_amd", "p9"}) {
		t.Errorf("order %v, err %v", order, err)
	}
	if _, _, err := moduleOrder(files, read, depends, nil, []string{"kvm_amd"}); err == nil || !strings.Contains(err.Error(), "no module ccp (needed by kvm_amd)") {
		t.Errorf("a missing dependency: %v", err)
	}
}

func TestKernelDep(t *testing.T) {
	for _, c := range []struct{ in, image, version string }{
		{"linux-image-6.1.0-57-amd64 (= 6.1.192-3)", "linux-image-6.1.0-57-amd64", "6.1.192-3"},
		{"initramfs-tools, linux-image-6.12.9-amd64", "linux-image-6.12.9-amd64", ""},
		{"something-else (>= 1)", "", ""},
	} {
		if i, v := kernelDep(c.in); i != c.image || v != c.version {
			t.Errorf("kernelDep(%q) = %q, %q; want %q, %q", c.in, i, v, c.image, c.version)
		}
	}
}
