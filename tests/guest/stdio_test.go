package guest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStdioTypes checks that the guest sees its standard descriptors as
// the host has them (a pipe, a regular file with its size, /dev/null, a
// terminal), as the same program run natively does.
func TestStdioTypes(t *testing.T) {
	needGuest(t)
	img := image(t, "./testdata/stdiotype")
	native := filepath.Join(t.TempDir(), "stdiotype")
	if b, err := exec.Command("go", "build", "-o", native, "./testdata/stdiotype").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	file := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(file, []byte("twelve bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdins := map[string]func() (*os.File, error){
		"pipe": func() (*os.File, error) {
			r, w, err := os.Pipe()
			if err == nil {
				w.Close()
			}
			return r, err
		},
		"file":     func() (*os.File, error) { return os.Open(file) },
		"devnull":  func() (*os.File, error) { return os.Open(os.DevNull) },
		"terminal": openPTS,
	}
	for name, open := range stdins {
		t.Run(name, func(t *testing.T) {
			runWith := func(bin string, args ...string) string {
				in, err := open()
				if err != nil {
					t.Skipf("no %s here: %v", name, err)
				}
				defer in.Close()
				cmd := exec.Command(bin, args...)
				var out bytes.Buffer
				cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &out, &out
				if err := cmd.Run(); err != nil {
					t.Fatalf("%s: %v\n%s", bin, err, out.String())
				}
				return out.String()
			}
			want := runWith(native)
			got := runWith(vmmBin, "run", "--timeout", "300s", img)
			for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
				if !strings.Contains(got, line+"\n") {
					t.Errorf("guest output lacks native %q\nguest:\n%s\nnative:\n%s", line, got, want)
				}
			}
			if !strings.Contains(want, "fd0: ") {
				t.Fatalf("native output %q", want)
			}
		})
	}
}

// openPTS opens the terminal end of a new pseudo-terminal (its master
// stays open for the test's life).
func openPTS() (*os.File, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, err
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, err
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	ptys = append(ptys, m)
	return s, nil
}

var ptys []*os.File
