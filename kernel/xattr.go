package kernel

// Extended attributes: the file system keeps none and takes none, like a
// Linux file system mounted without xattr support. The path or descriptor
// is checked first (ENOENT, EBADF as usual); then get, set and remove fail
// with EOPNOTSUPP (Go's ENOTSUP) and list returns an empty list.

//go:nosplit
func xattrPath(f *sysFrame, follow bool) int64 {
	var fl uint64
	if !follow {
		fl = atSymlinkNofollow
	}
	if r := inodeAt(atFdcwd, uintptr(f.rdi), fl); r < 0 {
		return r
	}
	return 0
}

//go:nosplit
func xattrFD(f *sysFrame) int64 {
	if getFile(f.rdi) == nil {
		return -eBADF
	}
	return 0
}

//go:nosplit
func orNotsup(r int64) int64 {
	if r < 0 {
		return r
	}
	return -eOPNOTSUPP
}

//go:nosplit
func sysXattrPath(f *sysFrame) int64 { return orNotsup(xattrPath(f, true)) }

//go:nosplit
func sysXattrLpath(f *sysFrame) int64 { return orNotsup(xattrPath(f, false)) }

//go:nosplit
func sysXattrFD(f *sysFrame) int64 { return orNotsup(xattrFD(f)) }

//go:nosplit
func sysListxattr(f *sysFrame) int64 { return xattrPath(f, true) }

//go:nosplit
func sysLlistxattr(f *sysFrame) int64 { return xattrPath(f, false) }

//go:nosplit
func sysFlistxattr(f *sysFrame) int64 { return xattrFD(f) }

// splice and tee move data only between pipes and files that support it
// on Linux; nothing here does, so they fail with EINVAL after the
// descriptors are checked, which is what makes Go fall back to read and
// write (ENOSYS it takes for an error).
//
//go:nosplit
func sysSplice(f *sysFrame) int64 {
	if getFile(f.rdi) == nil || getFile(f.rdx) == nil {
		return -eBADF
	}
	return -eINVAL
}
