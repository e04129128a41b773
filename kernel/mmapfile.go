package kernel

import "github.com/amberos/amber/boot"

// File mappings of the in-memory file system.
//
//   - MAP_SHARED maps the file's own data pages (fsdata.go), so the mapping
//     and read/write through a descriptor see the same bytes with no copy
//     and msync has nothing to write. Pages inside the file are mapped at
//     mmap time (holes are filled); pages past the end stay unmapped and a
//     touch fills them once the file has grown to cover them (lazyFault),
//     or raises SIGBUS as on Linux. Shrinking the file unmaps the pages it
//     frees. The mapping holds the inode open (inode.opens) until the last
//     of it is unmapped, so an unlinked file lives on as on Linux.
//   - MAP_PRIVATE copies the file's bytes into fresh pages at mmap time:
//     later writes to the file are not seen by the mapping (Linux shows
//     them until the page is first written), and MADV_DONTNEED gives
//     zeros rather than the file's bytes.
//
// /dev/zero maps as anonymous memory; pipes, the console, directories and
// other devices are ENODEV, as on Linux.

const (
	maxFileMaps = 256
	protWrite   = 0x2
	eOVERFLOW   = 75
)

// fileMap is a shared file mapping (private ones need no record).
type fileMap struct {
	start, end uintptr
	pgoff      uintptr // file page mapped at start
	ino        uint32
	shared     bool
}

var (
	fileMaps [maxFileMaps]fileMap
	nfmaps   int
)

// fileMapCheck validates a file mapping's descriptor, offset and access
// as Linux's mmap does and fills fm; fm.ino stays 0 for a file that maps
// as anonymous memory (/dev/zero). It returns 0 or -errno.
//
//go:nosplit
func fileMapCheck(f *sysFrame, fm *fileMap) int64 {
	off, prot, flags := f.r9, f.rdx, f.r10
	if off&(boot.PageSize-1) != 0 {
		return -eINVAL
	}
	o := getFile(f.r8)
	if o == nil || o.flags&oPath != 0 {
		return -eBADF
	}
	var shared bool
	switch flags & 3 {
	case mapShared, mapShared | mapPrivate: // MAP_SHARED_VALIDATE
		shared = true
		if prot&protWrite != 0 && (o.flags&oAccmode != oRdwr || o.flags&oAppend != 0) {
			return -eACCES
		}
	case mapPrivate:
	default:
		return -eINVAL
	}
	if o.flags&oAccmode == oWronly {
		return -eACCES
	}
	if o.kind != fdInode {
		return -eNODEV
	}
	n := ip(o.ino)
	switch n.mode & sIFMT {
	case sIFREG:
	case sIFCHR:
		if n.rdev == devZero {
			return 0
		}
		return -eNODEV
	default:
		return -eNODEV
	}
	if int64(off) < 0 || off/boot.PageSize > uint64(userLimit) {
		return -eOVERFLOW
	}
	fm.ino, fm.shared, fm.pgoff = o.ino, shared, uintptr(off/boot.PageSize)
	return 0
}

// filePages is the number of pages that hold n's bytes.
//
//go:nosplit
func filePages(n *inode) uintptr {
	return uintptr((n.size + boot.PageSize - 1) / boot.PageSize)
}

// fileMapInstall maps fm's file at [addr, addr+length), which is free.
//
//go:nosplit
func fileMapInstall(fm *fileMap, addr, length uintptr) int64 {
	n := ip(fm.ino)
	end := addr + length
	if !fm.shared {
		if length > freeBytes() || !mapRange(addr, length, false) {
			unmapRange(addr, end)
			return -eNOMEM
		}
		for a := addr; a < end; a += boot.PageSize {
			pg := fm.pgoff + (a-addr)/boot.PageSize
			if pg >= filePages(n) {
				break
			}
			src := blockAddr(n, pg, false)
			if src == 0 {
				continue // a hole: the fresh page is zero already
			}
			k := uintptr(boot.PageSize)
			if rest := uintptr(n.size) - pg*boot.PageSize; rest < k {
				k = rest
			}
			copy(userBytes(virtToPhys(a), k), userBytes(src, k))
		}
		return int64(addr)
	}
	m := &fileMaps[nfmaps]
	nfmaps++
	m.start, m.end, m.pgoff, m.ino, m.shared = addr, end, fm.pgoff, fm.ino, true
	n.opens++
	for a := addr; a < end; a += boot.PageSize {
		if fm.pgoff+(a-addr)/boot.PageSize >= filePages(n) {
			break
		}
		if !fileMapPage(m, a) {
			unmapRange(addr, end)
			return -eNOMEM
		}
	}
	return int64(addr)
}

// fileMapPage maps the file page behind va, which m covers and which lies
// inside the file, allocating it if it is a hole: false when memory ran out.
//
//go:nosplit
func fileMapPage(m *fileMap, va uintptr) bool {
	va &^= boot.PageSize - 1
	pa := blockAddr(ip(m.ino), m.pgoff+(va-m.start)/boot.PageSize, true)
	if pa == 0 {
		return false
	}
	e := pte(va)
	if e <= 1 {
		return false
	}
	*u64at(e) = uint64(pa) | pteP | pteW | pteU | pteShared
	return true
}

//go:nosplit
func fileMapAt(va uintptr) *fileMap {
	for i := 0; i < nfmaps; i++ {
		if m := &fileMaps[i]; va >= m.start && va < m.end {
			return m
		}
	}
	return nil
}

// fileMapFault maps the page of a shared file mapping at addr when the
// file now covers it (it grew since mmap, or the page was unmapped when it
// shrank).
//
//go:nosplit
func fileMapFault(addr uintptr) bool {
	m := fileMapAt(addr)
	if m == nil || m.pgoff+(addr-m.start)/boot.PageSize >= filePages(ip(m.ino)) {
		return false
	}
	return fileMapPage(m, addr)
}

// fileMapBeyondEOF reports whether addr lies in a shared file mapping past
// the end of its file: a touch there is SIGBUS, as on Linux.
//
//go:nosplit
func fileMapBeyondEOF(addr uintptr) bool {
	m := fileMapAt(addr)
	return m != nil && m.pgoff+(addr-m.start)/boot.PageSize >= filePages(ip(m.ino))
}

// fileMapRemove forgets the shared file mappings in [start, end) (their
// pages were unmapped by unmapPages), dropping the inode when the last
// piece of a mapping goes.
//
//go:nosplit
func fileMapRemove(start, end uintptr) {
	for i := 0; i < nfmaps; i++ {
		m := &fileMaps[i]
		if end <= m.start || start >= m.end {
			continue
		}
		switch {
		case start <= m.start && end >= m.end:
			ino := m.ino
			nfmaps--
			*m = fileMaps[nfmaps]
			fileMaps[nfmaps] = fileMap{}
			i--
			ip(ino).opens--
			iput(ino)
		case start <= m.start:
			m.pgoff += (end - m.start) / boot.PageSize
			m.start = end
		case end >= m.end:
			m.end = start
		case nfmaps < maxFileMaps:
			t := &fileMaps[nfmaps]
			nfmaps++
			t.start, t.end, t.pgoff, t.ino, t.shared = end, m.end, m.pgoff+(end-m.start)/boot.PageSize, m.ino, true
			ip(m.ino).opens++
			m.end = start
		default:
			// No slot for the tail: its mapped pages stay coherent, but it
			// no longer follows the file's growth.
			m.end = start
		}
	}
}

// fileMapShrink unmaps the pages of n's shared mappings past its new size
// before they are freed (setSize), so a touch there is SIGBUS and a freed
// page is never reached through a mapping.
//
//go:nosplit
func fileMapShrink(n *inode, size int64) {
	keep := uintptr((size + boot.PageSize - 1) / boot.PageSize)
	for i := 0; i < nfmaps; i++ {
		m := &fileMaps[i]
		if ip(m.ino) != n {
			continue
		}
		a := m.start
		if keep > m.pgoff {
			a = m.start + (keep-m.pgoff)*boot.PageSize
		}
		if a < m.start || a >= m.end {
			continue
		}
		changed := false
		for ; a < m.end; a += boot.PageSize {
			if e, _ := pteAt(a); e != 0 && *u64at(e)&pteP != 0 {
				*u64at(e) = 0
				changed = true
			}
		}
		if changed {
			forgetUserPages(m.start, m.end)
			tlbFlush(m.start, m.end)
		}
	}
}

// sysMsync: a shared mapping is the file's own memory, so there is nothing
// to write back; the arguments are checked as Linux does.
//
//go:nosplit
func sysMsync(f *sysFrame) int64 {
	const msAsync, msInvalidate, msSync = 1, 2, 4
	addr, n, flags := uintptr(f.rdi), uintptr(f.rsi), f.rdx
	if addr&(boot.PageSize-1) != 0 || flags&^(msAsync|msInvalidate|msSync) != 0 || flags&(msAsync|msSync) == msAsync|msSync {
		return -eINVAL
	}
	end := addr + (n+boot.PageSize-1)&^(boot.PageSize-1)
	if end < addr {
		return -eNOMEM
	}
	if n == 0 {
		return 0
	}
	if end > userLimit || !recorded(addr, end) {
		return -eNOMEM
	}
	return 0
}
