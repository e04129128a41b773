// Package mount mounts Amber's persistent file system at /data before the
// program's main runs. `vmm build` links it into every program; without a
// disk (or outside Amber) it does nothing.
package mount

import "github.com/amberos/amber/kernel/datafs"

func init() { datafs.Start() }
