package guest

import (
	"testing"

	"github.com/amberos/amber/tools/guestrun"
)

// TestNetEdges runs testdata/netedge: socket behaviours the standard
// library's net suite found wrong in the guest (a zero-length UDP read,
// ECONNRESET after a reset, net.Interfaces through netlink), each of which the program checks as Linux
// answers it.
func TestNetEdges(t *testing.T) {
	r := runGuest(t, "./testdata/netedge", guestrun.Config{})
	expect(t, r, 0, "netedge: udp zero-length read ok", "netedge: reset ok", "netedge: interfaces ok", "netedge: ok")
}
