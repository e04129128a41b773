package virtio

import "sync/atomic"

// The split virtqueue (§2.7): a descriptor table, the available ring the
// driver fills and the used ring the device fills. The indices of both
// rings run freely through 16 bits and wrap; a slot is index mod the
// queue size, which is a power of two so the two agree across the wrap.
//
// Layout in memory, for a queue of at most 128 entries: the descriptor
// table (16 bytes each) followed by the available ring in one page, the
// used ring in another.

// Descriptor flags.
const (
	descNext  = 1
	descWrite = 2
)

// AvailNoInterrupt asks the device not to interrupt on completions
// (the driver polls).
const AvailNoInterrupt = 1

// MaxQueue is the largest queue Queue lays out in its two pages.
const MaxQueue = 128

// Seg is one buffer of a request: guest-physical address and length;
// DeviceWrites for buffers the device fills.
type Seg struct {
	Addr         uint64
	Len          uint32
	DeviceWrites bool
}

// Queue is the driver's side of one split virtqueue.
type Queue struct {
	Size       uint16
	Desc       uintptr // descriptor table
	Avail      uintptr // available ring
	Used       uintptr // used ring
	availFlags uint16
	freeHead   uint16 // free descriptors, linked through their next fields
	nfree      uint16
	availIdx   uint16 // the driver's copy of avail.idx
	lastUsed   uint16 // used.idx up to which completions were taken
	kicked     uint16 // avail.idx when NeedNotify last looked
	eventIdx   bool   // EVENT_IDX: used_event and avail_event, not the flags
	polling    bool   // SetPolling(true): no interrupts wanted at all
	Broken     bool   // the device returned an impossible entry
	chainLen   [MaxQueue]uint16
}

// Init lays out a queue of size entries (a power of two, at most
// MaxQueue): descriptors and available ring at descAvail, used ring at
// used, both page-sized and zeroed here.
//
//go:nosplit
func (q *Queue) Init(size uint16, descAvail, used uintptr) {
	q.Size = size
	q.Desc = descAvail
	q.Avail = descAvail + 16*uintptr(size)
	q.Used = used
	zero(descAvail, 4096)
	zero(used, 4096)
	for i := uint16(0); i < size; i++ {
		*u16at(q.desc(i) + 14) = i + 1
	}
	q.freeHead, q.nfree = 0, size
	q.availIdx, q.lastUsed, q.kicked = 0, 0, 0
	q.availFlags = 0
	q.eventIdx, q.polling = false, false
	q.Broken = false
}

// UseEventIdx switches the queue to VIRTIO_F_EVENT_IDX's suppression
// (§2.7.10), once the feature is negotiated and before the queue is
// used: the driver asks for an interrupt at a given used index and the
// device for a doorbell at a given available index, in place of the
// flags.
//
//go:nosplit
func (q *Queue) UseEventIdx() {
	q.eventIdx = true
	q.SetPolling(q.polling)
}

// usedEvent is where the driver writes used_event: after the available
// ring. availEvent is where the device writes avail_event: after the used
// ring.
//
//go:nosplit
func (q *Queue) usedEvent() *uint16 { return u16at(q.Avail + 4 + 2*uintptr(q.Size)) }

//go:nosplit
func (q *Queue) availEvent() *uint16 { return u16at(q.Used + 4 + 8*uintptr(q.Size)) }

// noEvent is a used_event the device does not reach: half the index
// space ahead of what the driver has taken, so no completion the device
// can make (at most a queue's worth ahead) crosses it.
//
//go:nosplit
func (q *Queue) noEvent() { *q.usedEvent() = q.lastUsed + 0x8000 }

// fenceWord is the target of the locked instruction that orders the
// driver's store of used_event before its next load of used.idx.
var fenceWord uint32

// ArmInterrupt asks the device to interrupt on the next completion and
// reports whether one came already (the caller then takes it instead of
// waiting: the device may have looked before the request). Interrupts
// off again is DisarmInterrupt; under EVENT_IDX one interrupt disarms by
// itself, since the device interrupts only on crossing used_event.
//
//go:nosplit
func (q *Queue) ArmInterrupt() bool {
	if q.eventIdx {
		*q.usedEvent() = q.lastUsed
		atomic.AddUint32(&fenceWord, 0)
	} else {
		q.availFlags = 0
		atomic.StoreUint32(u32at(q.Avail), uint32(q.availIdx)<<16)
	}
	return q.Pending()
}

// DisarmInterrupt asks the device not to interrupt on completions (the
// flags; under EVENT_IDX nothing is needed until ArmInterrupt).
//
//go:nosplit
func (q *Queue) DisarmInterrupt() {
	if !q.eventIdx && q.availFlags == 0 {
		q.availFlags = AvailNoInterrupt
		atomic.StoreUint32(u32at(q.Avail), uint32(q.availIdx)<<16|uint32(q.availFlags))
	}
}

// SetPolling turns the device's interrupts for this queue off (true) or
// on; a hint the device may ignore (§2.7.7).
//
//go:nosplit
func (q *Queue) SetPolling(on bool) {
	q.polling = on
	q.availFlags = 0
	if on {
		q.availFlags = AvailNoInterrupt
	}
	if q.eventIdx {
		if on {
			q.noEvent()
		} else {
			*q.usedEvent() = q.lastUsed
		}
	}
	atomic.StoreUint32(u32at(q.Avail), uint32(q.availIdx)<<16|uint32(q.availFlags))
}

// Free returns the number of free descriptors.
//
//go:nosplit
func (q *Queue) Free() int { return int(q.nfree) }

//go:nosplit
func (q *Queue) desc(i uint16) uintptr { return q.Desc + 16*uintptr(i) }

// Add chains segs into descriptors and makes the chain available to the
// device; the caller then notifies it. It returns the chain's head, or
// false when fewer than len(segs) descriptors are free (or segs is
// empty).
//
//go:nosplit
func (q *Queue) Add(segs []Seg) (uint16, bool) {
	n := len(segs)
	if n == 0 || n > int(q.nfree) || q.Broken {
		return 0, false
	}
	head := q.freeHead
	i := head
	for k := 0; k < n; k++ {
		d := q.desc(i)
		next := *u16at(d + 14)
		*u64at(d) = segs[k].Addr
		*u32at(d + 8) = segs[k].Len
		flags := uint16(0)
		if segs[k].DeviceWrites {
			flags |= descWrite
		}
		if k < n-1 {
			flags |= descNext
		}
		*u16at(d + 12) = flags
		if k < n-1 {
			i = next
		} else {
			q.freeHead = next
		}
	}
	q.nfree -= uint16(n)
	q.chainLen[head] = uint16(n)
	*u16at(q.Avail + 4 + 2*uintptr(q.availIdx&(q.Size-1))) = head
	q.availIdx++
	// The ring entry and descriptors before the index (x86 keeps stores
	// in order; the atomic store keeps the compiler from reordering).
	atomic.StoreUint32(u32at(q.Avail), uint32(q.availIdx)<<16|uint32(q.availFlags))
	return head, true
}

// Pending reports whether the device has returned a chain not yet taken.
//
//go:nosplit
func (q *Queue) Pending() bool {
	return uint16(atomic.LoadUint32(u32at(q.Used))>>16) != q.lastUsed
}

// Next takes the next completion: the head of the chain the device
// returned and the number of bytes it wrote; the chain's descriptors are
// free again. ok is false when there is none, or when the device
// returned a head that is not in use (Broken is then set and the queue
// refuses further work: only a reset repairs it).
//
//go:nosplit
func (q *Queue) Next() (head uint16, n uint32, ok bool) {
	if q.Broken || !q.Pending() {
		return 0, 0, false
	}
	e := q.Used + 4 + 8*uintptr(q.lastUsed&(q.Size-1))
	id := *u32at(e)
	n = *u32at(e + 4)
	if id >= uint32(q.Size) || q.chainLen[id] == 0 {
		q.Broken = true
		return 0, 0, false
	}
	q.lastUsed++
	if q.polling && q.eventIdx {
		q.noEvent() // keep it out of the device's reach
	}
	head = uint16(id)
	// Free the chain by the length the driver recorded, not by walking
	// the device-visible flags.
	last := head
	for k := uint16(1); k < q.chainLen[head]; k++ {
		last = *u16at(q.desc(last) + 14)
	}
	*u16at(q.desc(last) + 14) = q.freeHead
	q.freeHead = head
	q.nfree += q.chainLen[head]
	q.chainLen[head] = 0
	return head, n, true
}

//go:nosplit
func zero(a, n uintptr) {
	for i := uintptr(0); i < n; i += 8 {
		*u64at(a + i) = 0
	}
}
