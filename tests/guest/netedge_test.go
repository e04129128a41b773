package guest

import (
	"strings"
	"testing"

	"github.com/amberos/amber/tools/guestrun"
)

// TestNetEdges runs testdata/netedge: socket behaviours the standard
// library's net suite found wrong in the guest (a zero-length UDP read,
// ECONNRESET after a reset, net.Interfaces through netlink, SCM_RIGHTS on
// a Unix socket), each of which the program checks as Linux
// answers it.
func TestNetEdges(t *testing.T) {
	r := runGuest(t, "./testdata/netedge", guestrun.Config{})
	expect(t, r, 0, "netedge: udp zero-length read ok", "netedge: reset ok", "netedge: interfaces ok", "netedge: rights ok", "netedge: ok")
}

// TestVmmTestNet: vmm test --net gives the tests the NIC vmm run --net
// does (net's TestInterfaces lists eth0 beside lo, through netlink), and
// refuses anything but QEMU's user-mode spelling.
func TestVmmTestNet(t *testing.T) {
	if guestReason != nil {
		t.Skip(guestReason)
	}
	r := run(t, "test", "--accel", "tcg", "--net", "tap=tap0", "net")
	if r.code != exitUsage || !strings.Contains(r.stderr, "want user[,OPTIONS]") {
		t.Errorf("--net tap=tap0: exit %d, stderr %q", r.code, r.stderr)
	}
	if guestAccel != guestrun.TCG {
		t.Skip("--net needs --accel tcg for now")
	}
	r = run(t, "test", "--accel", "tcg", "--timeout", "600s", "--net", "user", "net", "--", "-test.run", "^TestInterfaces$", "-test.v")
	if r.code != 0 || !strings.Contains(r.stdout, "lo: flags=up|loopback|running index=1") || !strings.Contains(r.stdout, "eth0: flags=up|broadcast|multicast|running index=2") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
