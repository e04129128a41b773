//go:build !(linux && amd64)

package guest

import "syscall"

func snapshotCall(string) (uintptr, syscall.Errno) { return 0, syscall.ENOSYS }
