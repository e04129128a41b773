// Package amber carries the guest side of Amber — the boot contract and the
// kernel — as source, so that `vmm build` can link the kernel into programs
// from any module on disk, not only from this one.
package amber

import "embed"

// GuestSource holds the packages linked into every image, and package
// guest, which programs import to talk to their VM. The kernel
// imports only the standard library and the other guest packages
// (TestGuestImportsOnlyStd); the network service (kernel/netsvc), linked
// into programs that use net, also needs gVisor's TCP/IP stack, so the
// module vmm build makes of this source requires the modules in
// GuestRequires at this module's versions (go.mod, go.sum).
//
//go:embed boot/*.go kernel/*.go kernel/*.s kernel/*/*.go kernel/*/*/*.go guest/*.go objstore/*.go drivers/*/*.go drivers/*/*.s go.mod go.sum
var GuestSource embed.FS

// GuestRequires are the modules the guest packages need beyond the
// standard library: the network service's (gVisor, and a DHCP message
// library with its dependencies).
var GuestRequires = []string{"gvisor.dev/gvisor", "github.com/google/btree", "golang.org/x/time", "golang.org/x/sys",
	"github.com/insomniacslk/dhcp", "github.com/u-root/uio", "github.com/pierrec/lz4/v4"}

// ModulePath is this module's path.
const ModulePath = "github.com/amberos/amber"
