package kernel

// The files `vmm build --files` packs into an image. The build's overlay
// replaces this file with one that sets both variables (static data: no
// init code), so the kernel unpacks them at boot, before any package of
// the program is initialized — the standard library's own tests read
// their testdata from init functions.
var (
	packedFiles string // a cpio "newc" archive
	packedCwd   string // NUL-terminated directory to start in, or ""
)
