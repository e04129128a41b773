// Package mount mounts Amber's persistent file system at /data before the
// program's main runs. `vmm build` links it into every program; without a
// disk (or outside Amber) it does nothing.
//
// It also registers datafs.AtExit as one of the runtime's exit hooks, so
// that /data is committed when main returns or the program calls os.Exit
// (docs/kernel.md, "Durability"). The runtime has no public exit hook:
// internal/runtime/exithook.Add is reached by linkname, which the overlay
// of `vmm build` permits (tools/build/overlay.go). So this package links
// only into images that `vmm build` makes.
package mount

import (
	_ "unsafe" // for linkname

	"github.com/amberos/amber/kernel/datafs"
)

// exitHook is internal/runtime/exithook.Hook, field for field (checked
// for the Go release tools/build supports).
type exitHook struct {
	F            func()
	RunOnFailure bool // run on a non-zero exit code too (os.Exit(3))
}

//go:linkname addExitHook internal/runtime/exithook.Add
func addExitHook(h exitHook)

func init() {
	datafs.Start()
	addExitHook(exitHook{F: datafs.AtExit, RunOnFailure: true})
}
