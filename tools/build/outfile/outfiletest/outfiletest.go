// Package outfiletest gives tests device nodes they may lose: a test of
// what a command does to /dev/null must not, should the command regress,
// replace the machine's own /dev/null (a test running as root could).
package outfiletest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Null returns a null device node for the test: a private one (character
// device 1:3) in a temporary directory when the test may create it, else
// /dev/null itself when the test cannot replace /dev/null anyway (it is
// not root); otherwise the test is skipped.
func Null(t testing.TB) string { return node(t, "null", 1, 3) }

// Full is Null for /dev/full (1:7), whose writes fail with ENOSPC.
func Full(t testing.TB) string { return node(t, "full", 1, 7) }

func node(t testing.TB, name string, major, minor uint32) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err == nil {
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			f.Close()
			return p
		}
	}
	if os.Geteuid() != 0 {
		return "/dev/" + name
	}
	t.Skipf("cannot make a private /dev/%s (a nodev file system?), and as root the test could replace the real one", name)
	return ""
}
