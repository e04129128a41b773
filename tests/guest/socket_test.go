package guest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnixSockets runs testdata/unixsock (net's unix, unixgram and
// unixpacket networks, socketpair, shutdown, a read deadline) in the guest
// and natively: the guest must print every line the native run does,
// except the answers to what the guest lacks (inet sockets, xattrs),
// which must be those of a Linux kernel without them.
func TestUnixSockets(t *testing.T) {
	needGuest(t)
	native := filepath.Join(t.TempDir(), "unixsock")
	if b, err := exec.Command("go", "build", "-o", native, "./testdata/unixsock").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	want, err := exec.Command(native).CombinedOutput()
	if err != nil {
		t.Fatalf("native run: %v\n%s", err, want)
	}
	r := runImage(t, "./testdata/unixsock")
	expect(t, r, 0, "tcp: false\n", "getxattr: operation not supported\n", "setxattr: operation not supported\n",
		"getxattr missing: no such file or directory\n", "done\n")
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		if strings.HasPrefix(line, "getxattr:") || strings.HasPrefix(line, "setxattr:") {
			continue
		}
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("guest output lacks native %q\nguest:\n%s\nnative:\n%s", line, r.stdout, want)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "unimplemented system call") {
		t.Errorf("the kernel lacks a call the program makes:\n%s", r.stdout)
	}
}

// TestForkExecFails checks that os/exec fails at once with ENOSYS: the
// guest is one process, and clone without CLONE_THREAD, fork and execve
// are refused rather than left to hang.
func TestForkExecFails(t *testing.T) {
	r := runImage(t, "./testdata/forkexec")
	expect(t, r, 0, "ENOSYS: true\n", "StartProcess ENOSYS: true\n", "fork: function not implemented\n",
		"execve: function not implemented\n", "quick: true\n")
}
