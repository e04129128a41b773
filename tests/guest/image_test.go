package guest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// copyImage copies the image at src to dst.
func copyImage(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// An image replaced while its VM runs, by `vmm build` to the same path
// and then by a copy written over it in place (cp, a truncation and new
// bytes: the VMM's lease on the file breaks, and it copies the image
// first), changes nothing in the running VM. KVM only: under QEMU the
// VMM does not map the image.
func TestImageReplacedWhileRunning(t *testing.T) {
	needKVM(t)
	path := filepath.Join(t.TempDir(), "prog.img")
	copyImage(t, image(t, "./testdata/cat"), path)
	other := image(t, "./testdata/exit3")

	cmd := exec.Command(vmmBin, "run", "--boot-time", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	echo := func(s string) {
		t.Helper()
		if _, err := io.WriteString(stdin, s+"\n"); err != nil {
			t.Fatalf("writing to the guest: %v", err)
		}
		if !lines.Scan() || lines.Text() != strings.ToUpper(s) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("guest answered %q to %q; stderr:\n%s", lines.Text(), s, stderr.String())
		}
	}
	echo("booted") // the VM runs, the image is mapped

	// vmm build writes a new file and renames it over the old; the
	// nested KVM stage has no Go toolchain to build with, so there the
	// test does the same by hand.
	if prebuilt == "" {
		if b, err := exec.Command(vmmBin, "build", "-o", path, "./testdata/exit3").CombinedOutput(); err != nil {
			t.Fatalf("vmm build: %v\n%s", err, b)
		}
	} else {
		tmp := filepath.Join(filepath.Dir(path), ".prog.img.tmp")
		copyImage(t, other, tmp)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	echo("after the rebuild")

	// In place: the open truncates the file the VM was started from.
	copyImage(t, image(t, "./testdata/cat"), path) // the file the VMM holds is the rebuilt one now; start over
	cmd2 := exec.Command(vmmBin, "run", "--boot-time", path)
	stdin2, err := cmd2.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out2, err := cmd2.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr2 strings.Builder
	cmd2.Stderr = &stderr2
	if err := cmd2.Start(); err != nil {
		t.Fatal(err)
	}
	lines2 := bufio.NewScanner(out2)
	echo2 := func(s string) {
		t.Helper()
		io.WriteString(stdin2, s+"\n")
		if !lines2.Scan() || lines2.Text() != strings.ToUpper(s) {
			cmd2.Process.Kill()
			cmd2.Wait()
			t.Fatalf("second guest answered %q to %q; stderr:\n%s", lines2.Text(), s, stderr2.String())
		}
	}
	echo2("booted")
	copyImage(t, other, path) // O_TRUNC, then exit3's bytes, in place
	echo2("after the rewrite in place")
	echo("still the first")

	for i, c := range []struct {
		cmd    *exec.Cmd
		in     io.WriteCloser
		rest   *bufio.Scanner
		want   string
		stderr *strings.Builder
	}{{cmd, stdin, lines, "3 lines", &stderr}, {cmd2, stdin2, lines2, "2 lines", &stderr2}} {
		c.in.Close()
		if !c.rest.Scan() || c.rest.Text() != c.want {
			t.Errorf("guest %d ended with %q, want %q", i+1, c.rest.Text(), c.want)
		}
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("guest %d: %v; stderr:\n%s", i+1, err, c.stderr.String())
		}
		// Whether the VMM held a lease (and copied at the rewrite) or
		// copied at open depends on the file system.
		t.Logf("guest %d: %s", i+1, regexp.MustCompile(`vmm: image: .*`).FindString(c.stderr.String()))
	}
	// The file did change: it is exit3 now.
	if r := run(t, "run", path); r.code != 3 {
		t.Errorf("the rewritten image exited %d, want 3 (exit3's)", r.code)
	}
}
