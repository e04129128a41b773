package kernel

import "unsafe"

// unpackFn is called through a func value so its deep call chain does not
// count against the nosplit budget of kinit's.
var unpackFn = unpackAtBoot

// bootFrame carries the arguments of the system calls made at boot.
var bootFrame sysFrame

//go:nosplit
func unpackAtBoot() {
	if len(packedFiles) == 0 {
		return
	}
	bootFrame.rdi = uint64(uintptr(unsafe.Pointer(unsafe.StringData(packedFiles))))
	bootFrame.rsi = uint64(len(packedFiles))
	if sysAmberLoadFiles(&bootFrame) < 0 {
		kfatal("boot: the files packed into the image are corrupt")
	}
	if len(packedCwd) > 1 {
		bootFrame.rdi = uint64(uintptr(unsafe.Pointer(unsafe.StringData(packedCwd))))
		if sysChdir(&bootFrame) < 0 {
			kfatal("boot: cannot enter the packed files' directory")
		}
	}
}
