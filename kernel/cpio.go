package kernel

import "unsafe"

// Files packed into the image: `vmm build --files DIR` adds DIR to the
// program as a cpio "newc" archive and an init function that hands its
// bytes to the kernel with system call nrAmberLoadFiles (Amber's own
// number, 501) before main runs. The archive is unpacked read-write into the
// root, keeping modes, modification times, directories and symlinks.

const (
	cpioHeaderLen = 110
)

//go:nosplit
func cpioHex(p uintptr) (uint64, bool) {
	v := uint64(0)
	for _, c := range userBytes(p, 8) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// sysAmberLoadFiles unpacks the archive at rdi (rsi bytes); it returns
// the number of entries created or a negative errno.
//
//go:nosplit
func sysAmberLoadFiles(f *sysFrame) int64 {
	fsReady()
	base, size := uintptr(f.rdi), uintptr(f.rsi)
	// The archive is read in place: all of it must be the program's.
	if !userOK(base, size) {
		return -eFAULT
	}
	off := uintptr(0)
	count := int64(0)
	for off+cpioHeaderLen <= size {
		h := base + off
		m := userBytes(h, 6)
		if m[0] != '0' || m[1] != '7' || m[2] != '0' || m[3] != '7' || m[4] != '0' || m[5] != '1' {
			return -eINVAL
		}
		mode, ok1 := cpioHex(h + 14)
		mtime, ok2 := cpioHex(h + 46)
		fsize, ok3 := cpioHex(h + 54)
		nsize, ok4 := cpioHex(h + 94)
		if !ok1 || !ok2 || !ok3 || !ok4 || nsize == 0 {
			return -eINVAL
		}
		data := (off + cpioHeaderLen + uintptr(nsize) + 3) &^ 3
		end := (data + uintptr(fsize) + 3) &^ 3
		if data+uintptr(fsize) > size || data+uintptr(fsize) < data {
			return -eINVAL
		}
		name, nl := h+cpioHeaderLen, uintptr(nsize)-1
		off = end
		if nl == 10 && string(userBytes(name, nl)) == "TRAILER!!!" {
			break
		}
		for nl > 0 && (*(*byte)(ptr(name)) == '/' || nl >= 2 && *(*byte)(ptr(name)) == '.' && *(*byte)(ptr(name + 1)) == '/') {
			if *(*byte)(ptr(name)) == '.' {
				name++
				nl--
			}
			name++
			nl--
		}
		if nl == 0 || nl == 1 && *(*byte)(ptr(name)) == '.' {
			continue
		}
		if r := cpioEntry(name, nl, uint32(mode), int64(mtime)*1e9, base+data, uintptr(fsize)); r < 0 {
			return r
		}
		count++
	}
	return count
}

//go:nosplit
func cpioEntry(name, nl uintptr, mode uint32, mtime int64, data, size uintptr) int64 {
	if nl > maxPathLen {
		return -eNAMETOOLONG
	}
	copy(pathBuf[:nl], userBytes(name, nl))
	pathLen = nl
	if r := walkFrom(rootIno, 0); r < 0 {
		return r
	}
	i := lkIno
	perm := mode & 0o7777
	switch mode & sIFMT {
	case sIFDIR:
		if i == 0 {
			i = ialloc(sIFDIR | perm)
			if i == 0 {
				return -eNOSPC
			}
			n := ip(i)
			n.nlink = 2
			n.parent = lkParent
			if r := dirAdd(lkParent, lkName, lkNameLen, i); r < 0 {
				return r
			}
			ip(lkParent).nlink++
		} else if !isDir(i) {
			return -eEXIST
		}
	case sIFREG, sIFLNK:
		if i != 0 && ip(i).mode&sIFMT != mode&sIFMT {
			return -eEXIST
		}
		if i == 0 {
			i = ialloc(mode&sIFMT | perm)
			if i == 0 {
				return -eNOSPC
			}
			if r := dirAdd(lkParent, lkName, lkNameLen, i); r < 0 {
				return r
			}
		}
		n := ip(i)
		setSize(n, 0)
		if size > 0 {
			if r := fileWrite(n, data, size, 0); r < int64(size) {
				return -eNOSPC
			}
		}
	default:
		return 0 // devices, fifos, sockets: skipped
	}
	n := ip(i)
	n.mode = n.mode&sIFMT | perm
	n.mtime, n.atime = mtime, mtime
	return 0
}

var _ = unsafe.Pointer(nil)
