// Package amber carries the guest side of Amber — the boot contract and the
// kernel — as source, so that `vmm build` can link the kernel into programs
// from any module on disk, not only from this one.
package amber

import "embed"

// GuestSource holds the packages linked into every image. They import only
// the standard library and each other (TestGuestImportsOnlyStd), so they
// build as a module with no requirements.
//
//go:embed boot/*.go kernel/*.go kernel/*.s kernel/*/*.go kernel/*/*/*.go objstore/*.go drivers/*/*.go drivers/*/*.s
var GuestSource embed.FS

// ModulePath is this module's path.
const ModulePath = "github.com/amberos/amber"
