package virtio

// The block device (§5.2). One request at a time: the kernel issues a
// request, then polls or sleeps until it completes.

// Block device features.
const (
	BlkFSizeMax = 1 << 1
	BlkFSegMax  = 1 << 2
	BlkFRO      = 1 << 5
	BlkFBlkSize = 1 << 6
	BlkFFlush   = 1 << 9
)

// Request types and statuses.
const (
	BlkIn    = 0
	BlkOut   = 1
	BlkFlush = 4

	BlkOK     = 0
	BlkIOErr  = 1
	BlkUnsupp = 2
	// BlkBroken is this driver's status for a device that broke the
	// queue's rules; it is not the device's.
	BlkBroken = 0xff
)

// SectorSize is the unit of capacity and request offsets, whatever the
// device's block size.
const SectorSize = 512

// Configuration fields.
const (
	blkCfgCapacity = 0
	blkCfgSegMax   = 12
	blkCfgBlkSize  = 20
)

// Blk is one virtio block device.
type Blk[R Regs] struct {
	T         Transport[R]
	Q         Queue
	Sectors   uint64 // capacity in 512-byte sectors
	BlockSize uint32 // the device's preferred block size
	ReadOnly  bool
	CanFlush  bool
	MaxSegs   int // data segments per request
	req       uintptr
	busy      bool
	head      uint16
	segs      [MaxQueue]Seg
}

// Init brings up the block device behind t (already probed): ring0 and
// ring1 are zeroed pages for the queue, req a page for request headers
// and status bytes. It returns why the device cannot be used, or "".
//
//go:nosplit
func (b *Blk[R]) Init(t Transport[R], ring0, ring1, req uintptr) string {
	b.T = t
	if t.DeviceID != DeviceBlock {
		return "not a block device"
	}
	if why := b.T.Negotiate(BlkFRO | BlkFBlkSize | BlkFFlush | BlkFSegMax); why != "" {
		return why
	}
	f := b.T.Features
	b.ReadOnly = f&BlkFRO != 0
	b.CanFlush = f&BlkFFlush != 0
	b.Sectors = b.T.Config64(blkCfgCapacity)
	b.BlockSize = SectorSize
	if f&BlkFBlkSize != 0 {
		if bs := b.T.Config32(blkCfgBlkSize); bs >= SectorSize && bs&(bs-1) == 0 {
			b.BlockSize = bs
		}
	}
	if why := b.T.SetupQueue(0, &b.Q, MaxQueue, ring0, ring1); why != "" {
		b.T.Fail()
		return why
	}
	b.MaxSegs = int(b.Q.Size) - 2
	if f&BlkFSegMax != 0 {
		if m := b.T.Config32(blkCfgSegMax); m > 0 && int(m) < b.MaxSegs {
			b.MaxSegs = int(m)
		}
	}
	b.Q.SetPolling(true)
	b.req = req
	b.busy = false
	b.T.Ready()
	return ""
}

// Start issues a request: BlkIn reads into data, BlkOut writes it,
// BlkFlush (no data) makes completed writes durable. It returns why the
// request cannot be issued, or "".
//
//go:nosplit
func (b *Blk[R]) Start(typ uint32, sector uint64, data []Seg) string {
	if b.busy {
		return "a request is in flight"
	}
	if len(data) > b.MaxSegs {
		return "too many segments"
	}
	n := uint64(0)
	for i := range data {
		if data[i].Len%SectorSize != 0 {
			return "segment not a multiple of 512 bytes"
		}
		n += uint64(data[i].Len) / SectorSize
	}
	switch typ {
	case BlkIn, BlkOut:
		if sector > b.Sectors || n > b.Sectors-sector {
			return "beyond the end of the device"
		}
		if typ == BlkOut && b.ReadOnly {
			return "read-only device"
		}
	case BlkFlush:
		if !b.CanFlush || len(data) != 0 {
			return "flush not supported"
		}
	default:
		return "unknown request type"
	}
	*u32at(b.req) = typ
	*u32at(b.req + 4) = 0
	*u64at(b.req + 8) = sector
	*(*uint8)(ptr(b.req + 16)) = BlkBroken
	b.segs[0] = Seg{Addr: uint64(b.req), Len: 16}
	for i := range data {
		b.segs[1+i] = data[i]
		b.segs[1+i].DeviceWrites = typ == BlkIn
	}
	b.segs[1+len(data)] = Seg{Addr: uint64(b.req + 16), Len: 1, DeviceWrites: true}
	head, ok := b.Q.Add(b.segs[:len(data)+2])
	if !ok {
		return "queue full or broken"
	}
	b.head, b.busy = head, true
	b.T.Notify(0)
	return ""
}

// Poll reports whether the request in flight completed and its status
// (BlkOK, BlkIOErr, BlkUnsupp, or BlkBroken when the device returned
// something it should not have).
//
//go:nosplit
func (b *Blk[R]) Poll() (done bool, status uint8) {
	if !b.busy {
		return true, BlkBroken
	}
	head, _, ok := b.Q.Next()
	if !ok {
		if b.Q.Broken {
			b.busy = false
			return true, BlkBroken
		}
		return false, 0
	}
	b.busy = false
	if head != b.head {
		b.Q.Broken = true
		return true, BlkBroken
	}
	return true, *(*uint8)(ptr(b.req + 16))
}
