package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The device's side of a split virtqueue (virtio spec v1.2 §2.7). The
// driver lays out three areas in guest RAM: the descriptor table (16
// bytes per entry: address, length, flags, next), the available ring
// (flags, idx, then a ring of heads) and the used ring (flags, idx, then
// {id, len} entries). Everything in them is written by the guest, possibly
// while the device reads it, so every value is read once into a local,
// checked, and only then used: a head or next index against the queue
// size, a buffer against guest RAM (GuestMemory.Slice), the length of a
// chain against the queue size (a chain longer than the table loops).
// A queue that breaks a rule is a driver bug the device cannot recover
// from without losing track of the rings: the error goes to the
// transport, which marks the device DEVICE_NEEDS_RESET (§2.1.2).

// Descriptor flags (§2.7.5).
const (
	vringDescNext     = 1
	vringDescWrite    = 2
	vringDescIndirect = 4
)

// vringAvailNoInterrupt in avail.flags: the driver polls and asks for no
// interrupt (§2.7.7).
const vringAvailNoInterrupt = 1

// maxQueueSize is the largest queue the device offers (QueueNumMax).
const maxQueueSize = 256

// errQueue wraps every violation of the queue's rules.
var errQueue = errors.New("virtqueue")

func queueErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errQueue}, args...)...)
}

// virtqueue is one split virtqueue as the device sees it.
type virtqueue struct {
	mem               *GuestMemory
	size              uint16 // entries; a power of two
	desc, avail, used uint64 // guest-physical addresses of the three areas
	lastAvail         uint16 // the next available entry to take
	usedIdx           uint16 // the device's copy of used.idx
	eventIdx          bool   // VIRTIO_F_EVENT_IDX negotiated (§2.7.10)
}

// vioFEventIdx is VIRTIO_F_EVENT_IDX: the driver says after which used
// index it wants an interrupt (used_event, after the available ring), the
// device after which available index it wants a doorbell (avail_event,
// after the used ring).
const vioFEventIdx = 1 << 29

// needInterrupt reports whether the driver wants an interrupt for the
// used entries from old to the current index: with EVENT_IDX when they
// pass used_event (vring_need_event, §2.7.10), without it unless
// avail.flags says NO_INTERRUPT.
func (q *virtqueue) needInterrupt(old uint16) bool {
	if !q.eventIdx {
		return q.availFlags()&vringAvailNoInterrupt == 0
	}
	ev, err := q.load16(q.avail + 4 + 2*uint64(q.size))
	if err != nil {
		return true
	}
	return q.usedIdx-ev-1 < q.usedIdx-old
}

// fence orders the device's earlier stores before its later loads (x86
// reorders a load before an older store to another address; a locked
// instruction does not let it).
var fence uint32

// armDoorbell, with EVENT_IDX, asks the driver for a doorbell on its next
// available entry (avail_event = the available index now) and reports
// whether entries came meanwhile (the caller then serves them instead of
// waiting). Without EVENT_IDX the driver always rings: it reports false.
func (q *virtqueue) armDoorbell() bool {
	if !q.eventIdx {
		return false
	}
	idx, err := q.load16(q.avail + 2)
	if err != nil {
		return false
	}
	w, err := q.mem.Slice(q.used+4+8*uint64(q.size), 2)
	if err != nil {
		return false
	}
	// A plain 16-bit store: the word around it is not all the device's.
	*(*uint16)(unsafe.Pointer(&w[0])) = idx
	atomic.AddUint32(&fence, 0)
	now, err := q.load16(q.avail + 2)
	return err == nil && now != idx
}

// checkQueueLayout validates a queue's size and areas as the driver
// configured them, before the queue is used (QueueReady = 1).
func checkQueueLayout(mem *GuestMemory, size uint16, desc, avail, used uint64) error {
	switch {
	case size == 0 || size > maxQueueSize || size&(size-1) != 0:
		return queueErr("size %d is not a power of two up to %d", size, maxQueueSize)
	case desc%16 != 0 || avail%2 != 0 || used%4 != 0:
		return queueErr("areas misaligned (descriptors %#x, available %#x, used %#x)", desc, avail, used)
	}
	n := uint64(size)
	for _, a := range []struct {
		name     string
		pa, size uint64
	}{{"descriptor table", desc, 16 * n}, {"available ring", avail, 6 + 2*n}, {"used ring", used, 6 + 8*n}} {
		if _, err := mem.Slice(a.pa, a.size); err != nil {
			return queueErr("%s: %v", a.name, err)
		}
	}
	return nil
}

// load16 reads the 16-bit word at pa (2-aligned) with an atomic load of
// the aligned 32-bit word that holds it: the guest writes it concurrently,
// and the load must not be torn, cached or reordered by the compiler.
func (q *virtqueue) load16(pa uint64) (uint16, error) {
	w, err := q.mem.Slice(pa&^3, 4)
	if err != nil {
		return 0, err
	}
	v := atomic.LoadUint32((*uint32)(unsafe.Pointer(&w[0])))
	return uint16(v >> (8 * (pa & 2))), nil
}

// availFlags returns the available ring's flags.
func (q *virtqueue) availFlags() uint16 {
	v, _ := q.load16(q.avail) // checked by checkQueueLayout
	return v
}

// pop takes the next available chain's head; ok is false when the
// driver has made none available.
func (q *virtqueue) pop() (head uint16, ok bool, err error) {
	idx, err := q.load16(q.avail + 2)
	if err != nil {
		return 0, false, queueErr("available ring: %v", err)
	}
	if idx == q.lastAvail {
		return 0, false, nil
	}
	if idx-q.lastAvail > q.size {
		return 0, false, queueErr("available index %d is %d entries ahead of the device (queue of %d)", idx, idx-q.lastAvail, q.size)
	}
	head, err = q.load16(q.avail + 4 + 2*uint64(q.lastAvail&(q.size-1)))
	if err != nil {
		return 0, false, queueErr("available ring: %v", err)
	}
	if head >= q.size {
		return 0, false, queueErr("available head %d is outside the queue of %d", head, q.size)
	}
	q.lastAvail++
	return head, true, nil
}

// chain is a descriptor chain resolved to guest memory: the buffers the
// device reads (first), then those it writes.
type chain struct {
	head     uint16
	readable [][]byte
	writable [][]byte
}

// resolve walks the chain at head. A chain that loops, names a descriptor
// outside the table, points outside RAM, or has a device-readable buffer
// after a device-writable one (§2.7.4.2) is an error. Indirect
// descriptors are not offered and so are an error too.
func (q *virtqueue) resolve(head uint16, c *chain) error {
	c.head = head
	c.readable, c.writable = c.readable[:0], c.writable[:0]
	table, err := q.mem.Slice(q.desc, 16*uint64(q.size))
	if err != nil {
		return queueErr("descriptor table: %v", err)
	}
	le := binary.LittleEndian
	i := head
	for n := uint16(0); ; n++ {
		if n == q.size {
			return queueErr("chain at %d is longer than the queue (%d): it loops", head, q.size)
		}
		d := table[16*uint64(i):]
		addr, length := le.Uint64(d), uint64(le.Uint32(d[8:]))
		flags, next := le.Uint16(d[12:]), le.Uint16(d[14:])
		if flags&vringDescIndirect != 0 {
			return queueErr("descriptor %d is indirect, which was not negotiated", i)
		}
		buf, err := q.mem.Slice(addr, length)
		if err != nil {
			return queueErr("descriptor %d: %v", i, err)
		}
		if flags&vringDescWrite != 0 {
			c.writable = append(c.writable, buf)
		} else if len(c.writable) > 0 {
			return queueErr("descriptor %d is device-readable after a device-writable one", i)
		} else {
			c.readable = append(c.readable, buf)
		}
		if flags&vringDescNext == 0 {
			return nil
		}
		if next >= q.size {
			return queueErr("descriptor %d's next, %d, is outside the queue of %d", i, next, q.size)
		}
		i = next
	}
}

// push returns the chain at head to the driver with written bytes in
// its device-writable buffers.
func (q *virtqueue) push(head uint16, written uint32) error {
	e, err := q.mem.Slice(q.used+4+8*uint64(q.usedIdx&(q.size-1)), 8)
	if err != nil {
		return queueErr("used ring: %v", err)
	}
	binary.LittleEndian.PutUint32(e, uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	q.usedIdx++
	// used.flags and used.idx are the device's: store both at once, after
	// the entry (the atomic store orders it; x86 keeps stores in order).
	w, err := q.mem.Slice(q.used, 4)
	if err != nil {
		return queueErr("used ring: %v", err)
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&w[0])), uint32(q.usedIdx)<<16)
	return nil
}
