package crash

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PhysMemory reads guest-physical memory. The VMM implements it over its
// guest memory mapping; it must fail (not panic, not read host memory) for
// any address range that is not guest RAM.
type PhysMemory interface {
	ReadPhys(pa uint64, p []byte) error
}

// PhysBytes is guest-physical memory held in one slice starting at guest
// physical address 0. It is what a VMM with a single RAM slot (or a test)
// needs.
type PhysBytes []byte

// ReadPhys implements PhysMemory with a bounds check written so that no
// pa/len combination can overflow past it.
func (m PhysBytes) ReadPhys(pa uint64, p []byte) error {
	if pa > uint64(len(m)) || uint64(len(p)) > uint64(len(m))-pa {
		return fmt.Errorf("physical range %#x+%#x is outside guest memory (size %#x)", pa, len(p), len(m))
	}
	copy(p, m[pa:])
	return nil
}

// Page-table entry bits (Intel SDM vol. 3, 4.5).
const (
	ptePresent  = 1 << 0
	ptePageSize = 1 << 7
	// Bits 51:12 hold the next table's (or a 4 KiB page's) address. Bits 63:52
	// are NX and software/protection-key bits, not address bits.
	pteAddrMask = 0x000f_ffff_ffff_f000
)

var levelNames = [4]string{"PML4", "PDPT", "PD", "PT"}

// WalkError says why a virtual address does not translate. Level is 0 for the
// PML4 through 3 for the PT, or -1 if the address is rejected before the walk.
type WalkError struct {
	VA     uint64
	Level  int
	Entry  uint64 // the offending entry, when one was read
	Reason string
	Err    error // the ReadPhys error, if reading a table failed
}

func (e *WalkError) Error() string {
	if e.Level < 0 {
		return fmt.Sprintf("va %#x: %s", e.VA, e.Reason)
	}
	s := fmt.Sprintf("va %#x: %s entry", e.VA, levelNames[e.Level])
	if e.Err != nil {
		return fmt.Sprintf("%s %s: %v", s, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s %#x %s", s, e.Entry, e.Reason)
}

func (e *WalkError) Unwrap() error { return e.Err }

// ErrNotPresent matches (with errors.Is) a WalkError caused by a not-present
// entry, as opposed to a malformed table or unreadable physical memory.
var ErrNotPresent = errors.New("not present")

func (e *WalkError) Is(target error) bool {
	return target == ErrNotPresent && e.Reason == "not present"
}

// PageWalk translates va through the 4-level x86-64 page tables rooted at cr3,
// the way the MMU would, reading every table through phys. The tables are
// guest-controlled, so every entry may be garbage: the walk is a fixed four
// steps (so a self-referencing table cannot make it loop) and each table read
// goes through ReadPhys, which does the bounds checking. Access rights (U/S,
// R/W, NX) are not checked: a crash report wants to see the memory whatever
// the guest was allowed to do with it.
func PageWalk(phys PhysMemory, cr3, va uint64) (pa uint64, err error) {
	// Bits 63:48 must copy bit 47, or the CPU raises #GP before any walk.
	if hi := va >> 47; hi != 0 && hi != 1<<17-1 {
		return 0, &WalkError{VA: va, Level: -1, Reason: "non-canonical address"}
	}
	table := cr3 & pteAddrMask // low CR3 bits are PCID or PWT/PCD
	var buf [8]byte
	for level := 0; level < 4; level++ {
		shift := 39 - 9*uint(level)
		idx := (va >> shift) & 511
		at := table + idx*8
		if err := phys.ReadPhys(at, buf[:]); err != nil {
			return 0, &WalkError{VA: va, Level: level, Reason: fmt.Sprintf("at pa %#x unreadable", at), Err: err}
		}
		e := binary.LittleEndian.Uint64(buf[:])
		if e&ptePresent == 0 {
			return 0, &WalkError{VA: va, Level: level, Entry: e, Reason: "not present"}
		}
		if e&ptePageSize != 0 {
			switch level {
			case 1, 2: // 1 GiB or 2 MiB page; bit 12 is PAT there, not address
				mask := uint64(1)<<shift - 1
				return (e & pteAddrMask &^ mask) | (va & mask), nil
			case 0:
				return 0, &WalkError{VA: va, Level: level, Entry: e, Reason: "has the reserved page-size bit set"}
			}
			// In a PT, bit 7 is PAT: an ordinary 4 KiB mapping.
		}
		table = e & pteAddrMask
	}
	return table | va&0xfff, nil
}

// VirtMemory reads guest-virtual memory by walking the guest's page tables.
type VirtMemory struct {
	Phys PhysMemory
	CR3  uint64
}

// ReadVirt implements Memory. Each 4 KiB piece is translated separately
// because contiguous virtual pages need not be contiguous physically; a read
// fails as a whole if any byte of it is unmapped.
func (m VirtMemory) ReadVirt(va uint64, p []byte) error {
	if m.Phys == nil {
		return errors.New("no guest physical memory")
	}
	if uint64(len(p)) > ^va+1 && va != 0 {
		return fmt.Errorf("virtual range %#x+%#x wraps around the address space", va, len(p))
	}
	for len(p) > 0 {
		n := 0x1000 - va&0xfff
		if n > uint64(len(p)) {
			n = uint64(len(p))
		}
		pa, err := PageWalk(m.Phys, m.CR3, va)
		if err != nil {
			return err
		}
		if err := m.Phys.ReadPhys(pa, p[:n]); err != nil {
			return fmt.Errorf("va %#x -> pa %#x: %w", va, pa, err)
		}
		p = p[n:]
		va += n
	}
	return nil
}
