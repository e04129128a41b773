package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/amberos/amber/boot"
)

// HCRelease takes guest-supplied ranges: each must be whole pages inside
// guest RAM, and a request with one bad run drops nothing at all. A good
// one reads as zeros afterwards. (No KVM needed: only guest memory.)
func TestReleaseChecksRanges(t *testing.T) {
	const size = 1 << 20
	m, err := newGuestMemory(size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	fill := func() {
		for i := range m.mem {
			m.mem[i] = 0xa5
		}
	}
	page := uint64(boot.PageSize)
	for _, c := range []struct {
		name string
		runs []boot.ReleaseRun
	}{
		{"unaligned address", []boot.ReleaseRun{{PA: 8, Len: page}}},
		{"unaligned length", []boot.ReleaseRun{{PA: page, Len: 100}}},
		{"empty run", []boot.ReleaseRun{{PA: page, Len: 0}}},
		{"past the end of RAM", []boot.ReleaseRun{{PA: size - page, Len: 2 * page}}},
		{"beyond RAM", []boot.ReleaseRun{{PA: size, Len: page}}},
		{"wrapping", []boot.ReleaseRun{{PA: ^uint64(0) - page + 1, Len: 2 * page}}},
		{"a good run then a bad one", []boot.ReleaseRun{{PA: 0, Len: page}, {PA: size, Len: page}}},
	} {
		fill()
		if err := m.release(c.runs); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
		if m.mem[0] != 0xa5 || m.mem[size-1] != 0xa5 {
			t.Errorf("%s: memory was dropped although the request was refused", c.name)
		}
	}
	fill()
	if err := m.release([]boot.ReleaseRun{{PA: page, Len: 2 * page}, {PA: size - page, Len: page}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		pa   uint64
		want byte
	}{{0, 0xa5}, {page - 1, 0xa5}, {page, 0}, {3*page - 1, 0}, {3 * page, 0xa5}, {size - page - 1, 0xa5}, {size - page, 0}, {size - 1, 0}} {
		if m.mem[c.pa] != c.want {
			t.Errorf("byte at %#x = %#x after the release, want %#x", c.pa, m.mem[c.pa], c.want)
		}
	}
}

// The run array itself is guest-supplied: its address, and a count of 0
// or above boot.MaxReleaseRuns, are refused; the hypercall answers EINVAL
// and the guest carries on.
func TestReleaseHypercallRejectsBadRequests(t *testing.T) {
	g := newFakeGuest(t, Config{})
	arr, _ := g.vm.mem.Slice(0x8000, 16)
	binary.LittleEndian.PutUint64(arr[0:], 0x10_0000_0000) // far beyond 1 MiB of RAM
	binary.LittleEndian.PutUint64(arr[8:], boot.PageSize)
	for _, c := range []struct {
		name   string
		pa, n  uint64
		wantOK bool
	}{
		{"array beyond RAM", 1 << 40, 1, false},
		{"array across the end of RAM", 1<<20 - 8, 1, false},
		{"no runs", 0x8000, 0, false},
		{"too many runs", 0x8000, boot.MaxReleaseRuns + 1, false},
		{"a run beyond RAM", 0x8000, 1, false},
	} {
		if r, _ := hcRelease(g.vm, &boot.Hypercall{Nr: boot.HCRelease, A0: c.pa, A1: c.n}); (r == 0) != c.wantOK {
			t.Errorf("%s: returned %d", c.name, r)
		}
	}
	if g.vm.releasedBytes != 0 {
		t.Errorf("%d bytes counted as released", g.vm.releasedBytes)
	}
}
