package kernel

import "unsafe"

// A socket's receive ring: 128 KiB in pages taken as the data first
// reaches them and kept until the socket closes. Programs count on a
// socket buffering far more than a pipe's page (Linux's default is about
// 208 KiB): a writer that sends 32 KiB to a reader that stopped early must
// not hang.

const (
	sockRingPages = 32
	sockRingSize  = sockRingPages * pageSize
)

type sockRing struct {
	pages      [sockRingPages]uintptr
	rpos, wpos uint64 // bytes ever read, written
}

//go:nosplit
func (r *sockRing) used() uintptr { return uintptr(r.wpos - r.rpos) }

//go:nosplit
func (r *sockRing) space() uintptr { return sockRingSize - r.used() }

// reserve makes sure the pages holding [pos, pos+k) exist; false when
// the page allocator is out of pages.
//
//go:nosplit
func (r *sockRing) reserve(pos uint64, k uintptr) bool {
	for off := uintptr(0); off < k; {
		i := (uintptr(pos) + off) / pageSize % sockRingPages
		if r.pages[i] == 0 {
			if r.pages[i] = allocPage(); r.pages[i] == 0 {
				return false
			}
		}
		off += pageSize - (uintptr(pos)+off)%pageSize
	}
	return true
}

//go:nosplit
func (r *sockRing) free() {
	for i := range r.pages {
		if r.pages[i] != 0 {
			freePage(r.pages[i])
			r.pages[i] = 0
		}
	}
}

// at is the address of ring position pos (its page must exist).
//
//go:nosplit
func (r *sockRing) at(pos uint64) uintptr {
	return r.pages[uintptr(pos)/pageSize%sockRingPages] + uintptr(pos)%pageSize
}

// user moves up to k bytes between the program's buf and the ring at pos
// (in: into the ring, whose pages reserve made), stopping where buf stops
// being the program's memory: the count moved.
//
//go:nosplit
func (r *sockRing) user(pos uint64, buf, k uintptr, in bool) uintptr {
	done := uintptr(0)
	for done < k {
		n := pageSize - uintptr(pos+uint64(done))%pageSize
		if n > k-done {
			n = k - done
		}
		a := r.at(pos + uint64(done))
		var c uintptr
		if in {
			c = copyInSome(ptr(a), buf+done, n)
		} else {
			c = copyOutSome(buf+done, ptr(a), n)
		}
		done += c
		if c < n {
			break
		}
	}
	return done
}

// kern copies k bytes between kernel memory at b and the ring at pos.
//
//go:nosplit
func (r *sockRing) kern(pos uint64, b unsafe.Pointer, k uintptr, in bool) {
	for i := uintptr(0); i < k; i++ {
		p := (*byte)(ptr(r.at(pos + uint64(i))))
		c := (*byte)(unsafe.Add(b, i))
		if in {
			*p = *c
		} else {
			*c = *p
		}
	}
}
