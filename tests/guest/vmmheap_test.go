package guest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestVMMHeapHasNoHugePages: vmm's own anonymous memory (its Go heap,
// stacks, the runtime's metadata) holds no transparent huge page. vmm is
// linked with GODEBUG disablethp=1 as its default (the Makefile's
// VMM_LDFLAGS): on a host whose THP mode is "always", as the nested
// Linux's, the heap's first 4 MiB chunk otherwise gets a 2 MiB page at the
// runtime's first allocation, for a heap of ~1 MiB (docs/benchmarks.md).
// The same run with GODEBUG=disablethp=0 is logged, to show what the
// default saves.
func TestVMMHeapHasNoHugePages(t *testing.T) {
	needKVM(t)
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		t.Skipf("this host has no transparent huge pages (%v): nothing to keep off the heap", err)
	}
	always := strings.Contains(string(mode), "[always]")
	if !always {
		t.Logf("THP mode here is %q, not always: the heap would get no huge page anyway (the nested Linux of make kvmtest is in always)", strings.TrimSpace(string(mode)))
	}
	img := image(t, "../../apps/hello")
	hugeRE := regexp.MustCompile(`transparent huge pages (\d+) KiB`)
	run := func(env ...string) string {
		cmd := exec.Command(vmmBin, "run", "--boot-time", img)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		m := hugeRE.FindSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("vmm run --boot-time %s: %v\n%s", img, err, out)
		}
		return string(m[1])
	}
	if huge := run(); huge != "0" {
		t.Errorf("vmm's own memory has %s KiB in transparent huge pages, want none (THP mode %q)", huge, strings.TrimSpace(string(mode)))
	}
	t.Logf("with GODEBUG=disablethp=0 the same run's own memory has %s KiB in transparent huge pages", run("GODEBUG=disablethp=0"))
}
