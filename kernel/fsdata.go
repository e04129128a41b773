package kernel

// File contents live in a page tree per inode: with depth 0 the root is
// the one data page, with depth 1 an index page of 512 data-page
// addresses, with depth 2 an index of index pages (1 GiB). Missing pages
// are holes that read as zeros.

const (
	maxDataDepth = 2
	ptrsPerPage  = pageSize / 8
	maxFileSize  = int64(ptrsPerPage*ptrsPerPage) * pageSize
)

//go:nosplit
func capPages(depth uint32) uintptr {
	c := uintptr(1)
	for d := uint32(0); d < depth; d++ {
		c *= ptrsPerPage
	}
	return c
}

// blockAddr returns the address of page pg of n's data, allocating it
// (and the index pages on the way) when alloc is set; 0 for a hole or
// when memory is exhausted.
//
//go:nosplit
func blockAddr(n *inode, pg uintptr, alloc bool) uintptr {
	for pg >= capPages(n.depth) {
		if !alloc || n.depth == maxDataDepth {
			return 0
		}
		if n.root != 0 {
			idx := allocPage()
			if idx == 0 {
				return 0
			}
			*u64at(idx) = uint64(n.root)
			n.root = idx
		}
		n.depth++
	}
	if n.root == 0 {
		if !alloc {
			return 0
		}
		if n.root = allocPage(); n.root == 0 {
			return 0
		}
	}
	p := n.root
	for d := n.depth; d > 0; d-- {
		e := u64at(p + ((pg>>(9*(d-1)))&(ptrsPerPage-1))*8)
		if *e == 0 {
			if !alloc {
				return 0
			}
			q := allocPage()
			if q == 0 {
				return 0
			}
			*e = uint64(q)
		}
		p = uintptr(*e)
	}
	return p
}

// freeIndex frees the pages an index page lists from entry from on, and
// the index page itself when from is 0.
//
//go:nosplit
func freeIndex(p, from uintptr) {
	if p == 0 {
		return
	}
	for i := from; i < ptrsPerPage; i++ {
		e := u64at(p + i*8)
		if *e != 0 {
			freePage(uintptr(*e))
			*e = 0
		}
	}
	if from == 0 {
		freePage(p)
	}
}

// freeFrom frees n's data pages from page from on.
//
//go:nosplit
func freeFrom(n *inode, from uintptr) {
	switch n.depth {
	case 0:
		if from == 0 && n.root != 0 {
			freePage(n.root)
		}
	case 1:
		freeIndex(n.root, from)
	case 2:
		if n.root != 0 {
			for i := from / ptrsPerPage; i < ptrsPerPage; i++ {
				e := u64at(n.root + i*8)
				if *e == 0 {
					continue
				}
				f := uintptr(0)
				if i == from/ptrsPerPage {
					f = from % ptrsPerPage
				}
				freeIndex(uintptr(*e), f)
				if f == 0 {
					*e = 0
				}
			}
			if from == 0 {
				freePage(n.root)
			}
		}
	}
	if from == 0 {
		n.root = 0
		n.depth = 0
	}
}

// fileRead copies up to cnt bytes at off into buf, stopping where buf
// stops being the program's memory: the count, or EFAULT when nothing
// could be stored.
//
//go:nosplit
func fileRead(n *inode, buf, cnt uintptr, off int64) int64 {
	if off >= n.size {
		return 0
	}
	if int64(cnt) > n.size-off {
		cnt = uintptr(n.size - off)
	}
	done := uintptr(0)
	for done < cnt {
		pos := uintptr(off) + done
		o := pos % pageSize
		k := pageSize - o
		if k > cnt-done {
			k = cnt - done
		}
		var c uintptr
		if src := blockAddr(n, pos/pageSize, false); src == 0 {
			c = clearUserSome(buf+done, k)
		} else {
			c = copyOutSome(buf+done, ptr(src+o), k)
		}
		done += c
		if c < k {
			break
		}
	}
	return userCount(done, cnt)
}

// fileWrite copies cnt bytes from buf to off, growing the file; it returns
// the count or a negative errno (ENOSPC, EFBIG, EFAULT) when nothing was
// written. It stops where buf stops being the program's memory.
//
//go:nosplit
func fileWrite(n *inode, buf, cnt uintptr, off int64) int64 {
	if off < 0 {
		return -eINVAL
	}
	if off+int64(cnt) > maxFileSize || off+int64(cnt) < off {
		if off >= maxFileSize {
			return -eFBIG
		}
		cnt = uintptr(maxFileSize - off)
	}
	done := uintptr(0)
	err := int64(-eNOSPC)
	for done < cnt {
		pos := uintptr(off) + done
		o := pos % pageSize
		k := pageSize - o
		if k > cnt-done {
			k = cnt - done
		}
		// Check the source before a block is allocated for it.
		u := userPrefix(buf+done, k)
		if u == 0 {
			err = -eFAULT
			break
		}
		dst := blockAddr(n, pos/pageSize, true)
		if dst == 0 {
			break
		}
		c := u - ucopy(ptr(dst+o), ptr(buf+done), u)
		done += c
		if c < k {
			err = -eFAULT
			break
		}
	}
	if done == 0 && cnt > 0 {
		return err
	}
	if end := off + int64(done); end > n.size {
		n.size = end
	}
	if done > 0 {
		t := fsNow()
		n.mtime, n.ctime = t, t
	}
	return int64(done)
}

// setSize truncates or extends a regular file.
//
//go:nosplit
func setSize(n *inode, size int64) int64 {
	if size < 0 {
		return -eINVAL
	}
	if size > maxFileSize {
		return -eFBIG
	}
	if size < n.size {
		fileMapShrink(n, size) // kernel/mmapfile.go
		freeFrom(n, uintptr((size+pageSize-1)/pageSize))
		if o := uintptr(size % pageSize); o != 0 {
			if p := blockAddr(n, uintptr(size/pageSize), false); p != 0 {
				clear(userBytes(p+o, pageSize-o))
			}
		}
	}
	n.size = size
	t := fsNow()
	n.mtime, n.ctime = t, t
	return 0
}
