package vmm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The virtio-mmio transport and the block device against a fake guest:
// guest memory is a plain byte slice, and the test plays the driver,
// writing descriptors and rings the way drivers/virtio does (and the
// ways it must not). No KVM.

// memDisk is a BlockBackend in memory.
type memDisk struct {
	b       []byte
	flushes int
	failIO  bool
}

func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if d.failIO {
		return 0, errors.New("injected")
	}
	return copy(p, d.b[off:]), nil
}

func (d *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.failIO {
		return 0, errors.New("injected")
	}
	return copy(d.b[off:], p), nil
}
func (d *memDisk) Flush() error { d.flushes++; return nil }
func (d *memDisk) Size() int64  { return int64(len(d.b)) }
func (d *memDisk) Close() error { return nil }

// Layout of the fake guest's memory.
const (
	tgMem   = 1 << 20
	tgDesc  = 0x1000
	tgAvail = 0x2000
	tgUsed  = 0x3000
	tgHdr   = 0x4000 // request headers, 16 bytes each
	tgStat  = 0x5000 // status bytes
	tgData  = 0x10000
	tgQSize = 16
)

type testGuest struct {
	t      *testing.T
	mem    *GuestMemory
	disk   *memDisk
	dev    *blkDevice
	tr     *virtioMMIO
	irqs   int
	avail  uint16
	used   uint16
	nextDs uint16
}

func newTestGuest(t *testing.T, readOnly bool) *testGuest {
	g := &testGuest{t: t, mem: &GuestMemory{mem: make([]byte, tgMem)}}
	g.disk = &memDisk{b: make([]byte, 64*blkSector)}
	for i := range g.disk.b {
		g.disk.b[i] = byte(i * 7)
	}
	g.dev = newBlkDevice(g.disk, readOnly)
	g.tr = newVirtioMMIO(g.mem, g.dev, func() { g.irqs++ })
	return g
}

func (g *testGuest) r32(off uint64) uint32 {
	var b [4]byte
	g.tr.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (g *testGuest) w32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	g.tr.Write(off, b[:])
}

// start runs the handshake with the features in want and sets up the
// queue; it reports whether the device kept FEATURES_OK.
func (g *testGuest) start(want uint64) bool {
	g.w32(vioStatus, 0)
	g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver)
	g.w32(vioDriverFeatSel, 0)
	g.w32(vioDriverFeatures, uint32(want))
	g.w32(vioDriverFeatSel, 1)
	g.w32(vioDriverFeatures, uint32(want>>32))
	g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK)
	if g.r32(vioStatus)&vioStatusFeaturesOK == 0 {
		return false
	}
	g.w32(vioQueueSel, 0)
	g.w32(vioQueueNum, tgQSize)
	g.w32(vioQueueDescLow, tgDesc)
	g.w32(vioQueueDriverLow, tgAvail)
	g.w32(vioQueueDeviceLow, tgUsed)
	g.w32(vioQueueReady, 1)
	g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK|vioStatusDriverOK)
	clear(g.mem.mem[tgDesc : tgUsed+0x1000])
	g.avail, g.used, g.nextDs = 0, 0, 0
	return true
}

func (g *testGuest) put(pa uint64, v any) {
	b, _ := binary.Append(nil, binary.LittleEndian, v)
	copy(g.mem.mem[pa:], b)
}

func (g *testGuest) u16(pa uint64) uint16 { return binary.LittleEndian.Uint16(g.mem.mem[pa:]) }

type tdesc struct {
	addr  uint64
	len   uint32
	write bool
}

// submit chains ds into descriptors and makes the chain available.
func (g *testGuest) submit(ds ...tdesc) uint16 {
	head := g.nextDs
	for k, d := range ds {
		i := (head + uint16(k)) % tgQSize
		flags, next := uint16(0), (i+1)%tgQSize
		if d.write {
			flags |= vringDescWrite
		}
		if k < len(ds)-1 {
			flags |= vringDescNext
		}
		g.put(tgDesc+16*uint64(i), struct {
			A uint64
			L uint32
			F uint16
			N uint16
		}{d.addr, d.len, flags, next})
	}
	g.nextDs = (head + uint16(len(ds))) % tgQSize
	g.putAvail(head)
	return head
}

func (g *testGuest) putAvail(head uint16) {
	g.put(tgAvail+4+2*uint64(g.avail%tgQSize), head)
	g.avail++
	g.put(tgAvail+2, g.avail)
}

// request submits a block request with data buffers and returns the
// status address.
func (g *testGuest) request(typ uint32, sector uint64, data []tdesc) uint64 {
	slot := uint64(g.avail % tgQSize)
	hdr, st := tgHdr+16*slot, tgStat+slot
	g.put(hdr, struct {
		T, R uint32
		S    uint64
	}{typ, 0, sector})
	g.mem.mem[st] = 0xee
	ds := append([]tdesc{{hdr, 16, false}}, data...)
	g.submit(append(ds, tdesc{st, 1, true})...)
	return st
}

// notify rings the doorbell and returns the used entries it produced.
func (g *testGuest) notify() [][2]uint32 {
	g.w32(vioQueueNotify, 0)
	var out [][2]uint32
	for ; g.used != g.u16(tgUsed+2); g.used++ {
		e := tgUsed + 4 + 8*uint64(g.used%tgQSize)
		out = append(out, [2]uint32{binary.LittleEndian.Uint32(g.mem.mem[e:]), binary.LittleEndian.Uint32(g.mem.mem[e+4:])})
	}
	return out
}

const tgFeatures = vioFVersion1 | blkFFlush | blkFBlkSize | blkFSegMax

func TestVirtioMMIORegisters(t *testing.T) {
	g := newTestGuest(t, false)
	if g.r32(vioMagic) != vioMagicValue || g.r32(vioVersion) != 2 || g.r32(vioDeviceID) != 2 {
		t.Fatalf("magic %#x version %d device %d", g.r32(vioMagic), g.r32(vioVersion), g.r32(vioDeviceID))
	}
	g.w32(vioDeviceFeatSel, 1)
	if g.r32(vioDeviceFeatures) != 1 {
		t.Errorf("high features %#x, want VERSION_1 only", g.r32(vioDeviceFeatures))
	}
	g.w32(vioDeviceFeatSel, 0)
	if f := g.r32(vioDeviceFeatures); f != blkFFlush|blkFBlkSize|blkFSegMax {
		t.Errorf("low features %#x", f)
	}
	if g.r32(vioConfig) != 64 || g.r32(vioConfig+4) != 0 || g.r32(vioConfig+20) != 512 || g.r32(vioConfig+12) != maxQueueSize-2 {
		t.Errorf("config: capacity %d, blk_size %d, seg_max %d", g.r32(vioConfig), g.r32(vioConfig+20), g.r32(vioConfig+12))
	}
	// A byte read of the configuration works; a byte read of a register
	// gives zero.
	var b [1]byte
	g.tr.Read(vioConfig, b[:])
	if b[0] != 64 {
		t.Errorf("config byte read %d", b[0])
	}
	g.tr.Read(vioMagic, b[:])
	if b[0] != 0 {
		t.Errorf("byte read of magic %#x", b[0])
	}
	if ro := newTestGuest(t, true); ro.r32(vioDeviceFeatures)&blkFRO == 0 {
		t.Error("read-only disk does not offer F_RO")
	}
	// Negotiation: without VERSION_1, or with a feature not offered,
	// FEATURES_OK does not stick.
	if g.start(blkFFlush) {
		t.Error("FEATURES_OK without VERSION_1")
	}
	if g.start(tgFeatures | 1<<28) {
		t.Error("FEATURES_OK with a feature not offered (INDIRECT_DESC)")
	}
	if !g.start(vioFVersion1) || !g.start(tgFeatures) {
		t.Fatal("FEATURES_OK refused")
	}
	if g.r32(vioQueueReady) != 1 || g.r32(vioQueueNumMax) != maxQueueSize {
		t.Errorf("ready %d max %d", g.r32(vioQueueReady), g.r32(vioQueueNumMax))
	}
	// The queue's registers are fixed while it is ready.
	g.w32(vioQueueNum, 4)
	if g.r32(vioQueueNum) != tgQSize {
		t.Errorf("queue size changed while ready: %d", g.r32(vioQueueNum))
	}
	// Reset.
	g.w32(vioStatus, 0)
	if g.r32(vioStatus) != 0 || g.r32(vioQueueReady) != 0 {
		t.Errorf("after reset: status %#x ready %d", g.r32(vioStatus), g.r32(vioQueueReady))
	}
}

func TestVirtioBlkRequests(t *testing.T) {
	g := newTestGuest(t, false)
	if !g.start(tgFeatures) {
		t.Fatal("handshake")
	}
	// Read sectors 2-4 into two buffers.
	st := g.request(blkTIn, 2, []tdesc{{tgData, 1024, true}, {tgData + 0x1000, 512, true}})
	used := g.notify()
	if len(used) != 1 || used[0][1] != 1536+1 || g.mem.mem[st] != blkSOK {
		t.Fatalf("read: used %v status %d", used, g.mem.mem[st])
	}
	if !bytes.Equal(g.mem.mem[tgData:tgData+1024], g.disk.b[1024:2048]) || !bytes.Equal(g.mem.mem[tgData+0x1000:tgData+0x1200], g.disk.b[2048:2560]) {
		t.Fatal("read data differ")
	}
	if g.irqs != 1 || g.r32(vioInterruptStatus) != vioIntUsedBuffer {
		t.Fatalf("irqs %d status %#x", g.irqs, g.r32(vioInterruptStatus))
	}
	// Until the driver acknowledges, completions add no interrupt (a
	// level, not an edge per completion).
	g.request(blkTIn, 0, []tdesc{{tgData, 512, true}})
	if len(g.notify()) != 1 || g.irqs != 1 {
		t.Fatalf("irqs %d after a second completion before the ack", g.irqs)
	}
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	if g.r32(vioInterruptStatus) != 0 {
		t.Fatal("ack did not clear")
	}
	// A cause the driver did not acknowledge interrupts again.
	g.tr.intStatus.Store(vioIntUsedBuffer | vioIntConfig)
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	if g.irqs != 2 || g.r32(vioInterruptStatus) != vioIntConfig {
		t.Fatalf("irqs %d status %#x after a partial ack", g.irqs, g.r32(vioInterruptStatus))
	}
	g.w32(vioInterruptACK, vioIntConfig)
	g.irqs = 1
	// Write one sector, header and data in one descriptor.
	hdrData := uint64(tgData + 0x8000)
	g.put(hdrData, struct {
		T, R uint32
		S    uint64
	}{blkTOut, 0, 10})
	for i := range 512 {
		g.mem.mem[hdrData+16+uint64(i)] = byte(i ^ 0x5a)
	}
	g.mem.mem[tgStat] = 0xee
	g.submit(tdesc{hdrData, 16 + 512, false}, tdesc{tgStat, 1, true})
	if used := g.notify(); len(used) != 1 || used[0][1] != 1 || g.mem.mem[tgStat] != blkSOK {
		t.Fatalf("write: used %v status %d", used, g.mem.mem[tgStat])
	}
	if !bytes.Equal(g.disk.b[10*512:11*512], g.mem.mem[hdrData+16:hdrData+16+512]) {
		t.Fatal("write data differ")
	}
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	// Flush, GET_ID, an unknown type, out of range, a partial sector,
	// and a backend error; several in one notify.
	sts := []uint64{
		g.request(blkTFlush, 0, nil),
		g.request(blkTGetID, 0, []tdesc{{tgData, 20, true}}),
		g.request(99, 0, nil),
		g.request(blkTIn, 63, []tdesc{{tgData, 1024, true}}),
		g.request(blkTIn, 1<<60, []tdesc{{tgData, 512, true}}),
		g.request(blkTOut, 0, []tdesc{{tgData, 100, false}}),
	}
	want := []uint8{blkSOK, blkSOK, blkSUnsupp, blkSIOErr, blkSIOErr, blkSIOErr}
	before := g.irqs
	if used := g.notify(); len(used) != len(sts) {
		t.Fatalf("used %v", used)
	}
	for i, s := range sts {
		if g.mem.mem[s] != want[i] {
			t.Errorf("request %d: status %d, want %d", i, g.mem.mem[s], want[i])
		}
	}
	if g.irqs != before+1 {
		t.Errorf("%d interrupts for one batch", g.irqs-before)
	}
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	if g.disk.flushes != 1 || string(g.mem.mem[tgData:tgData+9]) != "amber-vda" {
		t.Errorf("flushes %d id %q", g.disk.flushes, g.mem.mem[tgData:tgData+20])
	}
	g.disk.failIO = true
	s := g.request(blkTIn, 0, []tdesc{{tgData, 512, true}})
	g.notify()
	if g.mem.mem[s] != blkSIOErr {
		t.Errorf("backend error: status %d", g.mem.mem[s])
	}
	g.disk.failIO = false
	g.w32(vioInterruptACK, vioIntUsedBuffer)
	// The driver asks for no interrupts: none.
	g.put(tgAvail, uint16(vringAvailNoInterrupt))
	before = g.irqs
	g.request(blkTIn, 0, []tdesc{{tgData, 512, true}})
	if len(g.notify()) != 1 || g.irqs != before {
		t.Errorf("interrupt despite NO_INTERRUPT")
	}
	if err := g.tr.brokenReason(); err != nil {
		t.Fatal(err)
	}
}

func TestVirtioBlkReadOnly(t *testing.T) {
	g := newTestGuest(t, true)
	if !g.start(tgFeatures | blkFRO) {
		t.Fatal("handshake")
	}
	orig := bytes.Clone(g.disk.b)
	st := g.request(blkTOut, 0, []tdesc{{tgData, 512, false}})
	fl := g.request(blkTFlush, 0, nil)
	rd := g.request(blkTIn, 0, []tdesc{{tgData, 512, true}})
	g.notify()
	if g.mem.mem[st] != blkSIOErr || g.mem.mem[fl] != blkSOK || g.mem.mem[rd] != blkSOK {
		t.Errorf("write %d flush %d read %d", g.mem.mem[st], g.mem.mem[fl], g.mem.mem[rd])
	}
	if !bytes.Equal(orig, g.disk.b) {
		t.Error("read-only disk written")
	}
}

// Broken queues: each marks the device DEVICE_NEEDS_RESET with a
// configuration interrupt, serves nothing more, and a reset repairs it.
func TestVirtioBadQueues(t *testing.T) {
	desc := func(g *testGuest, i uint16, addr uint64, l uint32, flags, next uint16) {
		g.put(tgDesc+16*uint64(i), struct {
			A uint64
			L uint32
			F uint16
			N uint16
		}{addr, l, flags, next})
	}
	for _, c := range []struct {
		name string
		set  func(g *testGuest)
		want string
	}{
		{"loop", func(g *testGuest) {
			desc(g, 0, tgHdr, 16, vringDescNext, 1)
			desc(g, 1, tgHdr, 16, vringDescNext, 0)
			g.putAvail(0)
		}, "loops"},
		{"self loop", func(g *testGuest) {
			desc(g, 3, tgHdr, 16, vringDescNext, 3)
			g.putAvail(3)
		}, "loops"},
		{"head out of range", func(g *testGuest) { g.putAvail(tgQSize) }, "outside the queue"},
		{"next out of range", func(g *testGuest) {
			desc(g, 0, tgHdr, 16, vringDescNext, 0xffff)
			g.putAvail(0)
		}, "outside the queue"},
		{"buffer outside RAM", func(g *testGuest) {
			desc(g, 0, tgMem-8, 16, vringDescNext, 1)
			desc(g, 1, tgStat, 1, vringDescWrite, 0)
			g.putAvail(0)
		}, "outside guest memory"},
		{"length wraps", func(g *testGuest) {
			desc(g, 0, ^uint64(0)-4, 16, 0, 0)
			g.putAvail(0)
		}, "outside guest memory"},
		{"index too far ahead", func(g *testGuest) { g.put(tgAvail+2, uint16(tgQSize+1)) }, "ahead"},
		{"indirect", func(g *testGuest) {
			desc(g, 0, tgHdr, 16, vringDescIndirect, 0)
			g.putAvail(0)
		}, "indirect"},
		{"readable after writable", func(g *testGuest) {
			desc(g, 0, tgStat, 1, vringDescNext|vringDescWrite, 1)
			desc(g, 1, tgHdr, 16, 0, 0)
			g.putAvail(0)
		}, "device-readable after"},
		{"no status byte", func(g *testGuest) {
			desc(g, 0, tgHdr, 16, 0, 0)
			g.putAvail(0)
		}, "no device-writable status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGuest(t, false)
			if !g.start(tgFeatures) {
				t.Fatal("handshake")
			}
			c.set(g)
			g.notify()
			err := g.tr.brokenReason()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if g.r32(vioStatus)&vioStatusNeedsReset == 0 || g.r32(vioInterruptStatus)&vioIntConfig == 0 || g.irqs == 0 {
				t.Fatalf("status %#x interrupt status %#x irqs %d", g.r32(vioStatus), g.r32(vioInterruptStatus), g.irqs)
			}
			// Broken: a good request is not served.
			if err := g.tr.process(); !errors.Is(err, errNeedsReset) {
				t.Fatalf("process on a broken device: %v", err)
			}
			// A reset repairs it.
			if !g.start(tgFeatures) {
				t.Fatal("handshake after reset")
			}
			st := g.request(blkTIn, 0, []tdesc{{tgData, 512, true}})
			if len(g.notify()) != 1 || g.mem.mem[st] != blkSOK {
				t.Fatal("request after reset failed")
			}
		})
	}
}

// A queue placed outside RAM, misaligned or of a bad size is refused
// when the driver makes it ready.
func TestVirtioBadLayout(t *testing.T) {
	for _, c := range []struct {
		name              string
		num               uint32
		desc, avail, used uint64
	}{
		{"size 0", 0, tgDesc, tgAvail, tgUsed},
		{"size 3", 3, tgDesc, tgAvail, tgUsed},
		{"size too big", 512, tgDesc, tgAvail, tgUsed},
		{"descriptors outside RAM", 16, tgMem - 16, tgAvail, tgUsed},
		{"used ring beyond 4G", 16, tgDesc, tgAvail, 1 << 40},
		{"misaligned", 16, tgDesc + 8, tgAvail, tgUsed},
	} {
		g := newTestGuest(t, false)
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver)
		g.w32(vioQueueNum, c.num)
		g.w32(vioQueueDescLow, uint32(c.desc))
		g.w32(vioQueueDescHigh, uint32(c.desc>>32))
		g.w32(vioQueueDriverLow, uint32(c.avail))
		g.w32(vioQueueDeviceLow, uint32(c.used))
		g.w32(vioQueueDeviceHigh, uint32(c.used>>32))
		g.w32(vioQueueReady, 1)
		if g.r32(vioQueueReady) != 0 || g.r32(vioStatus)&vioStatusNeedsReset == 0 {
			t.Errorf("%s: ready %d status %#x", c.name, g.r32(vioQueueReady), g.r32(vioStatus))
		}
	}
}

// FuzzVirtqueue hands the device arbitrary queue memory: descriptor
// table, available ring and the requests' headers all come from the
// fuzzer. The device must not panic (an out-of-range access panics in
// Go), must return from process (no hang), and must either serve
// requests or mark itself broken.
func FuzzVirtqueue(f *testing.F) {
	// Seeds: a valid read, a loop, a head out of range.
	valid := make([]byte, 0x60)
	le := binary.LittleEndian
	le.PutUint64(valid[0:], tgHdr)
	le.PutUint32(valid[8:], 16)
	le.PutUint16(valid[12:], vringDescNext)
	le.PutUint16(valid[14:], 1)
	le.PutUint64(valid[16:], tgData)
	le.PutUint32(valid[24:], 512)
	le.PutUint16(valid[28:], vringDescNext|vringDescWrite)
	le.PutUint16(valid[30:], 2)
	le.PutUint64(valid[32:], tgStat)
	le.PutUint32(valid[40:], 1)
	le.PutUint16(valid[44:], vringDescWrite)
	f.Add(uint8(4), valid, []byte{0, 0, 1, 0, 0, 0}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})
	loop := bytes.Clone(valid)
	le.PutUint16(loop[30:], 0)
	f.Add(uint8(4), loop, []byte{0, 0, 1, 0, 0, 0}, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(2), valid, []byte{0, 0, 3, 0, 7, 0, 1, 0}, []byte{})
	f.Fuzz(func(t *testing.T, logSize uint8, descs, avail, hdrs []byte) {
		g := newTestGuest(t, false)
		size := uint32(1) << (logSize % 9)
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver)
		feat := uint64(tgFeatures)
		g.w32(vioDriverFeatures, uint32(feat))
		g.w32(vioDriverFeatSel, 1)
		g.w32(vioDriverFeatures, uint32(feat>>32))
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK)
		g.w32(vioQueueNum, size)
		g.w32(vioQueueDescLow, tgDesc)
		g.w32(vioQueueDriverLow, tgAvail)
		g.w32(vioQueueDeviceLow, tgUsed)
		g.w32(vioQueueReady, 1)
		g.w32(vioStatus, vioStatusAcknowledge|vioStatusDriver|vioStatusFeaturesOK|vioStatusDriverOK)
		copy(g.mem.mem[tgDesc:tgAvail], descs)
		copy(g.mem.mem[tgAvail:tgUsed], avail)
		copy(g.mem.mem[tgHdr:tgStat], hdrs)
		// Requests may read disk data over the rings themselves, so the
		// rings need not settle; each call is bounded all the same.
		for range 3 {
			g.notify()
		}
		if g.tr.brokenReason() == nil && g.tr.q.usedIdx != uint16(g.tr.served.Load()) {
			t.Fatalf("served %d chains, used index %d", g.tr.served.Load(), g.tr.q.usedIdx)
		}
	})
}

// The device's goroutine, woken by a doorbell eventfd as KVM's ioeventfd
// would signal it (an eventfd needs no KVM): requests complete, and close
// ends the goroutine.
func TestVirtioBlkGoroutine(t *testing.T) {
	g := newTestGuest(t, false)
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	bell := &doorbell{fd: fd}
	irq := make(chan struct{}, 100)
	g.tr.raise = func() { irq <- struct{}{} }
	g.tr.kick = bell.ring
	r := &blkRunner{t: g.tr, bell: bell}
	r.wg.Add(1)
	go r.run()
	if !g.start(tgFeatures) {
		t.Fatal("handshake")
	}
	for i := range 40 {
		st := g.request(blkTIn, uint64(i%64), []tdesc{{tgData, 512, true}})
		g.w32(vioQueueNotify, 0) // the exit path: kicks the goroutine
		<-irq
		if s := g.r32(vioInterruptStatus); s != vioIntUsedBuffer {
			t.Fatalf("interrupt status %#x", s)
		}
		g.w32(vioInterruptACK, vioIntUsedBuffer)
		if g.mem.mem[st] != blkSOK || !bytes.Equal(g.mem.mem[tgData:tgData+512], g.disk.b[i%64*512:][:512]) {
			t.Fatalf("request %d: status %d", i, g.mem.mem[st])
		}
	}
	r.close()
}
