package guest

import (
	"syscall"
	"unsafe"
)

func snapshotCall(name string) (uintptr, syscall.Errno) {
	p := unsafe.StringData(name)
	r, _, e := syscall.Syscall(sysSnapshot, uintptr(unsafe.Pointer(p)), uintptr(len(name)), 0)
	return r, e
}
