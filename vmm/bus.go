package vmm

import (
	"fmt"
	"sort"
)

// Device is a device model on a bus: an access to its range is handed to
// it with the offset from the range's base. data is the access's bytes
// (1, 2, 4 or 8 for MMIO; size x count for port string I/O): Write
// consumes them, Read fills them in. Both run on the vCPU thread, in the
// exit that made the access, so they must not block for long; a device
// with slow work hands it to its own goroutine.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// Snapshotter is a device whose state can be saved and restored as a
// plain Go value (a struct of numbers and byte slices), for snapshots.
type Snapshotter interface {
	SaveState() any
	RestoreState(any) error
}

// Bus maps address ranges to devices: one for port I/O (16-bit port
// numbers), one for MMIO (guest-physical addresses). Ranges never
// overlap, so an address has at most one device. It is not safe for
// concurrent changes: devices are added before the vCPU runs.
type Bus struct {
	name   string
	ranges []busRange // sorted by base
}

type busRange struct {
	base, size uint64
	name       string
	dev        Device
}

// Add places dev at [base, base+size). It fails for an empty range, one
// that wraps around, or one that overlaps a device already there.
func (b *Bus) Add(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("%s bus: %s: bad range %#x+%#x", b.name, name, base, size)
	}
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base >= base })
	if i > 0 {
		if p := b.ranges[i-1]; p.base+p.size > base {
			return fmt.Errorf("%s bus: %s at %#x+%#x overlaps %s at %#x+%#x", b.name, name, base, size, p.name, p.base, p.size)
		}
	}
	if i < len(b.ranges) {
		if n := b.ranges[i]; base+size > n.base {
			return fmt.Errorf("%s bus: %s at %#x+%#x overlaps %s at %#x+%#x", b.name, name, base, size, n.name, n.base, n.size)
		}
	}
	b.ranges = append(b.ranges, busRange{})
	copy(b.ranges[i+1:], b.ranges[i:])
	b.ranges[i] = busRange{base: base, size: size, name: name, dev: dev}
	return nil
}

// find returns the device whose range holds all of [addr, addr+n).
func (b *Bus) find(addr uint64, n int) (*busRange, bool) {
	// A handful of devices: a linear scan.
	for i := range b.ranges {
		r := &b.ranges[i]
		if addr >= r.base && addr-r.base < r.size {
			if uint64(n) > r.size-(addr-r.base) {
				return nil, false // runs off the end of the device
			}
			return r, true
		}
	}
	return nil, false
}

// Read serves a guest read of len(data) bytes at addr. Where no device
// holds the whole access the bytes read as all ones, as an unclaimed bus
// cycle does on real hardware; it reports whether a device answered.
func (b *Bus) Read(addr uint64, data []byte) bool {
	return b.access(addr, len(data), data, false)
}

// Write serves a guest write at addr; with no device there it is dropped.
// It reports whether a device took it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	return b.access(addr, len(data), data, true)
}

// access dispatches an access whose first span bytes must lie in one
// device. Port I/O passes span 1: a device decodes the port an IN or OUT
// names, and string I/O (REP OUTSB) repeats one port, its data the size
// times the count.
func (b *Bus) access(addr uint64, span int, data []byte, write bool) bool {
	r, ok := b.find(addr, span)
	switch {
	case ok && write:
		r.dev.Write(addr-r.base, data)
	case ok:
		r.dev.Read(addr-r.base, data)
	case !write:
		for i := range data {
			data[i] = 0xff
		}
	}
	return ok
}

// Devices lists the bus's devices by name, in address order.
func (b *Bus) Devices() []string {
	var names []string
	for _, r := range b.ranges {
		names = append(names, r.name)
	}
	return names
}

// errStateType is RestoreState's error for a state of another device.
func errStateType(dev any, s any) error {
	return fmt.Errorf("restoring %T: state of type %T", dev, s)
}
