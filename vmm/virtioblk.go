package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/objstore/filedev"
	"golang.org/x/sys/unix"
)

// The virtio block device (virtio spec v1.2 §5.2) on the MMIO transport.
// A request is a chain: a 16-byte header the device reads (type,
// reserved, sector), the data (read by the device for a write, written
// for a read), and a status byte the device writes last. The data moves
// between the backend and guest RAM directly (pread/pwrite into the
// request's own buffers): no copy in the VMM.

// Block device features (§5.2.3).
const (
	blkFSegMax  = 1 << 2
	blkFRO      = 1 << 5
	blkFBlkSize = 1 << 6
	blkFFlush   = 1 << 9
)

// Request types and statuses (§5.2.6).
const (
	blkTIn    = 0
	blkTOut   = 1
	blkTFlush = 4
	blkTGetID = 8

	blkSOK     = 0
	blkSIOErr  = 1
	blkSUnsupp = 2

	blkSector  = 512
	blkIDBytes = 20 // GET_ID's serial number
)

// BlockBackend is what a disk stores its bytes in: a raw file, or the
// disk object of an objstore store. ReadAt and WriteAt are only called
// within Size; Flush makes completed writes durable.
type BlockBackend interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Size() int64
	Close() error
}

// rawDisk is a raw disk image: sector i at byte 512*i of the file.
type rawDisk struct {
	f    *os.File
	size int64
}

// OpenRawDisk opens a raw disk image file (or host block device) whose
// size is a non-empty whole number of sectors. It holds the disk's lock
// (filedev's: exclusive, shared for a read-only disk) until Close, so
// `vmm store put FILE:/data/...` or another VM cannot write the disk
// under a running guest.
func OpenRawDisk(path string, readOnly bool) (BlockBackend, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	if err := filedev.LockFile(f, !readOnly); err != nil {
		f.Close()
		return nil, InUse(err)
	}
	size, err := f.Seek(0, 2) // also the size of a block device
	if err == nil && (size <= 0 || size%blkSector != 0) {
		err = fmt.Errorf("%s: %d bytes: a disk image must be a non-empty whole number of 512-byte sectors", path, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rawDisk{f: f, size: size}, nil
}

func (d *rawDisk) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *rawDisk) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }
func (d *rawDisk) Size() int64                              { return d.size }
func (d *rawDisk) Close() error                             { return d.f.Close() }

// Flush is fdatasync: the data and what is needed to read it back.
func (d *rawDisk) Flush() error { return unix.Fdatasync(int(d.f.Fd())) }

// InUse rewrites filedev's *LockedError for a disk: who holds it and
// what to do. Other errors are returned unchanged.
func InUse(err error) error {
	var le *filedev.LockedError
	if errors.As(err, &le) {
		return fmt.Errorf("%s is in use by pid %d (a running vmm run --disk, or a vmm store command writing it): stop it first", le.Path, le.PID)
	}
	return err
}

// blkDevice is the device type behind a virtioMMIO transport.
type blkDevice struct {
	disk     BlockBackend
	readOnly bool
	cfg      [24]byte
	hdr      [16]byte

	// Per request type, for statistics and tests.
	reads, writes, flushes, errors atomic.Uint64
}

func newBlkDevice(disk BlockBackend, readOnly bool) *blkDevice {
	b := &blkDevice{disk: disk, readOnly: readOnly}
	le := binary.LittleEndian
	le.PutUint64(b.cfg[0:], uint64(disk.Size()/blkSector)) // capacity
	le.PutUint32(b.cfg[12:], maxQueueSize-2)               // seg_max: the header and status take two
	le.PutUint32(b.cfg[20:], blkSector)                    // blk_size
	return b
}

func (b *blkDevice) deviceID() uint32 { return 2 }

func (b *blkDevice) features() uint64 {
	f := uint64(vioFVersion1 | blkFSegMax | blkFBlkSize | blkFFlush)
	if b.readOnly {
		f |= blkFRO
	}
	return f
}

func (b *blkDevice) config() []byte { return b.cfg[:] }

// serve runs one request. A request the device can answer gets a status
// (IOERR for a malformed header, a range beyond the disk, a write to a
// read-only disk, a backend error; UNSUPP for an unknown type); only a
// chain without a byte to put the status in breaks the queue.
func (b *blkDevice) serve(c *chain) (uint32, error) {
	// The status is the last device-writable byte.
	w := c.writable
	for len(w) > 0 && len(w[len(w)-1]) == 0 {
		w = w[:len(w)-1]
	}
	if len(w) == 0 {
		return 0, queueErr("block request at %d has no device-writable status byte", c.head)
	}
	last := w[len(w)-1]
	status := &last[len(last)-1]
	w = append(w[:len(w)-1:len(w)-1], last[:len(last)-1])
	in := iovLen(w)

	st, written := b.request(c.readable, w, in)
	*status = st
	if st != blkSOK {
		b.errors.Add(1)
	}
	return written + 1, nil
}

// request runs the request whose header and data-out are in r, data-in
// buffers in w (in bytes); it returns the status and the bytes written
// to w.
func (b *blkDevice) request(r, w [][]byte, in uint64) (uint8, uint32) {
	if iovCopyOut(b.hdr[:], r) < len(b.hdr) {
		return blkSIOErr, 0
	}
	le := binary.LittleEndian
	typ, sector := le.Uint32(b.hdr[0:]), le.Uint64(b.hdr[8:])
	out := iovSkip(r, len(b.hdr))
	switch typ {
	case blkTIn, blkTOut:
		n := in
		if typ == blkTOut {
			n = iovLen(out)
		}
		size := uint64(b.disk.Size())
		if n%blkSector != 0 || sector > size/blkSector || n > size-sector*blkSector {
			return blkSIOErr, 0
		}
		off := int64(sector * blkSector)
		if typ == blkTIn {
			b.reads.Add(1)
			for _, buf := range w {
				if _, err := b.disk.ReadAt(buf, off); err != nil {
					return blkSIOErr, 0
				}
				off += int64(len(buf))
			}
			return blkSOK, uint32(n)
		}
		// Linux's driver with F_RO never sends a write; QEMU answers one
		// with IOERR, and so does this device.
		if b.readOnly {
			return blkSIOErr, 0
		}
		b.writes.Add(1)
		for _, buf := range out {
			if _, err := b.disk.WriteAt(buf, off); err != nil {
				return blkSIOErr, 0
			}
			off += int64(len(buf))
		}
		return blkSOK, 0
	case blkTFlush:
		b.flushes.Add(1)
		if b.readOnly {
			return blkSOK, 0
		}
		if err := b.disk.Flush(); err != nil {
			return blkSIOErr, 0
		}
		return blkSOK, 0
	case blkTGetID:
		var id [blkIDBytes]byte
		copy(id[:], "amber-vda")
		n := 0
		for _, buf := range w {
			n += copy(buf, id[n:])
		}
		return blkSOK, uint32(n)
	}
	return blkSUnsupp, 0
}

func iovLen(v [][]byte) uint64 {
	n := uint64(0)
	for _, b := range v {
		n += uint64(len(b))
	}
	return n
}

// iovCopyOut copies the start of v into p.
func iovCopyOut(p []byte, v [][]byte) int {
	n := 0
	for _, b := range v {
		if n == len(p) {
			break
		}
		n += copy(p[n:], b)
	}
	return n
}

// iovSkip returns v without its first n bytes.
func iovSkip(v [][]byte, n int) [][]byte {
	for len(v) > 0 && n >= len(v[0]) {
		n -= len(v[0])
		v = v[1:]
	}
	if len(v) > 0 && n > 0 {
		v = append([][]byte{v[0][n:]}, v[1:]...)
	}
	return v
}

// blkRunner is the block device's goroutine: it waits on the doorbell and
// serves the queue.
type blkRunner struct {
	t    *virtioMMIO
	bell *doorbell
	stop atomic.Bool
	wg   sync.WaitGroup
}

func (r *blkRunner) run() {
	defer r.wg.Done()
	for {
		if _, err := r.bell.wait(); err != nil || r.stop.Load() {
			return
		}
		for !r.stop.Load() {
			if more, err := r.t.processSome(); !more || err != nil {
				break
			}
		}
	}
}

func (r *blkRunner) close() error {
	r.stop.Store(true)
	r.bell.ring()
	r.wg.Wait()
	return nil
}

// maxDisks bounds the transports: their vectors and pages are in a row.
const maxDisks = 8

// addDisk builds disk i: its transport at its page, the doorbell on
// QueueNotify, the MSI, the goroutine, and the command-line entry that
// announces it to the guest.
// DiskRequests returns how many requests the VM's disks have served
// (reads, writes, flushes and failed ones): set against Exits, the exits
// a request costs.
func (vm *VM) DiskRequests() uint64 {
	var n uint64
	for _, b := range vm.blks {
		n += b.reads.Load() + b.writes.Load() + b.flushes.Load() + b.errors.Load()
	}
	return n
}

func (vm *VM) addDisk(i int, d Disk) error {
	if i >= maxDisks {
		return fmt.Errorf("at most %d disks", maxDisks)
	}
	pa := uint64(boot.VirtioMMIOPA + i*boot.VirtioMMIOSize)
	bell, err := vm.newDoorbell(pa+vioQueueNotify, 4, false)
	if err != nil {
		return err
	}
	irq, err := vm.newInterrupt(uint8(boot.VirtioVector + i))
	if err != nil {
		return err
	}
	blk := newBlkDevice(d.Backend, d.ReadOnly)
	vm.blks = append(vm.blks, blk)
	t := newVirtioMMIO(vm.mem, blk, func() { irq.Trigger() })
	t.kick = bell.ring
	r := &blkRunner{t: t, bell: bell}
	r.wg.Add(1)
	go r.run()
	vm.closers = append(vm.closers, r.close)
	if err := vm.mmioBus.Add(fmt.Sprintf("virtio-blk%d", i), pa, boot.VirtioMMIOSize, t); err != nil {
		return err
	}
	vm.cfg.Cmdline = append(vm.cfg.Cmdline[:len(vm.cfg.Cmdline):len(vm.cfg.Cmdline)], fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", pa, boot.VirtioVector+i))
	return nil
}
