package virtio

import (
	"bytes"
	"encoding/binary"
	"syscall"
	"testing"
	"unsafe"
)

// mem returns n page-aligned pages outside the Go heap, standing in for
// guest-physical memory (the guest's RAM is identity-mapped).
func mem(t *testing.T, pages int) []byte {
	t.Helper()
	b, err := syscall.Mmap(-1, 0, pages*4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(b) })
	return b
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// view returns the n bytes at guest address a.
func view(a uint64, n uint32) []byte { return unsafe.Slice((*byte)(ptr(uintptr(a))), n) }

// fakeDev is a virtio-mmio block device written from the spec, as QEMU's
// is: registers, the split queue seen from the device's side, and a disk
// in memory.
type fakeDev struct {
	t          *testing.T
	version    uint32
	id         uint32
	features   uint64
	featSel    uint32
	drvSel     uint32
	driverFeat uint64
	status     uint32
	keepFeatOK bool
	numMax     uint32
	num        uint32
	ready      uint32
	desc       uint64
	driver     uint64
	device     uint64
	lastAvail  uint16
	usedIdx    uint16
	manual     bool // serve only on serve(), not on notify
	notifies   int
	disk       []byte
	config     [64]byte
	flushes    int
	corrupt    func(id uint32) uint32
}

func newFake(t *testing.T, sectors int) *fakeDev {
	d := &fakeDev{t: t, version: 2, id: DeviceBlock, numMax: 256, keepFeatOK: true,
		features: FeatureVersion1 | BlkFFlush | BlkFBlkSize | BlkFSegMax,
		disk:     make([]byte, sectors*SectorSize)}
	binary.LittleEndian.PutUint64(d.config[0:], uint64(sectors))
	binary.LittleEndian.PutUint32(d.config[12:], 126)
	binary.LittleEndian.PutUint32(d.config[20:], 4096)
	return d
}

func (d *fakeDev) Read32(off uintptr) uint32 {
	switch {
	case off == RegMagic:
		return Magic
	case off == RegVersion:
		return d.version
	case off == RegDeviceID:
		return d.id
	case off == RegDeviceFeatures:
		return uint32(d.features >> (32 * d.featSel))
	case off == RegQueueNumMax:
		return d.numMax
	case off == RegQueueReady:
		return d.ready
	case off == RegStatus:
		return d.status
	case off == RegConfigGeneration:
		return 0
	case off >= RegConfig && off+4 <= RegConfig+uintptr(len(d.config)):
		return binary.LittleEndian.Uint32(d.config[off-RegConfig:])
	}
	d.t.Errorf("read of register %#x", off)
	return 0
}

func (d *fakeDev) Write32(off uintptr, v uint32) {
	switch off {
	case RegDeviceFeatSel:
		d.featSel = v & 1
	case RegDriverFeatSel:
		d.drvSel = v & 1
	case RegDriverFeatures:
		d.driverFeat = d.driverFeat&^(0xffffffff<<(32*d.drvSel)) | uint64(v)<<(32*d.drvSel)
	case RegStatus:
		if v == 0 {
			*d = fakeDev{t: d.t, version: d.version, id: d.id, features: d.features, numMax: d.numMax,
				keepFeatOK: d.keepFeatOK, manual: d.manual, disk: d.disk, config: d.config, corrupt: d.corrupt}
			return
		}
		if v&StatusFeaturesOK != 0 && (!d.keepFeatOK || d.driverFeat&^d.features != 0) {
			v &^= StatusFeaturesOK
		}
		d.status = v
	case RegQueueSel:
		if v != 0 {
			d.t.Errorf("queue %d selected", v)
		}
	case RegQueueNum:
		d.num = v
	case RegQueueReady:
		d.ready = v
	case RegQueueDescLow:
		d.desc = d.desc&^0xffffffff | uint64(v)
	case RegQueueDescHigh:
		d.desc = d.desc&0xffffffff | uint64(v)<<32
	case RegQueueDriverLow:
		d.driver = d.driver&^0xffffffff | uint64(v)
	case RegQueueDriverHigh:
		d.driver = d.driver&0xffffffff | uint64(v)<<32
	case RegQueueDeviceLow:
		d.device = d.device&^0xffffffff | uint64(v)
	case RegQueueDeviceHigh:
		d.device = d.device&0xffffffff | uint64(v)<<32
	case RegQueueNotify:
		d.notifies++
		if d.status&StatusDriverOK == 0 {
			d.t.Errorf("notify before DRIVER_OK")
		}
		if !d.manual {
			d.serve(-1)
		}
	default:
		d.t.Errorf("write of register %#x", off)
	}
}

// serve completes up to max available chains (all if max < 0).
func (d *fakeDev) serve(max int) int {
	n := 0
	for max < 0 || n < max {
		availIdx := binary.LittleEndian.Uint16(view(d.driver+2, 2))
		if availIdx == d.lastAvail {
			break
		}
		head := binary.LittleEndian.Uint16(view(d.driver+4+2*uint64(d.lastAvail%uint16(d.num)), 2))
		d.lastAvail++
		written := d.request(head)
		id := uint32(head)
		if d.corrupt != nil {
			id = d.corrupt(id)
		}
		e := view(d.device+4+8*uint64(d.usedIdx%uint16(d.num)), 8)
		binary.LittleEndian.PutUint32(e, id)
		binary.LittleEndian.PutUint32(e[4:], written)
		d.usedIdx++
		binary.LittleEndian.PutUint16(view(d.device+2, 2), d.usedIdx)
		n++
	}
	return n
}

type fdesc struct {
	addr  uint64
	len   uint32
	flags uint16
}

// request runs one block request chain and returns the bytes written
// into the driver's buffers.
func (d *fakeDev) request(head uint16) uint32 {
	var chain []fdesc
	for i := head; ; {
		if int(i) >= int(d.num) || len(chain) > int(d.num) {
			d.t.Fatalf("bad chain from %d", head)
		}
		b := view(d.desc+16*uint64(i), 16)
		fd := fdesc{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint16(b[12:])}
		chain = append(chain, fd)
		if fd.flags&descNext == 0 {
			break
		}
		i = binary.LittleEndian.Uint16(b[14:])
	}
	if len(chain) < 2 || chain[0].len != 16 || chain[0].flags&descWrite != 0 {
		d.t.Fatalf("bad request header %+v", chain)
	}
	st := chain[len(chain)-1]
	if st.len != 1 || st.flags&descWrite == 0 {
		d.t.Fatalf("bad status descriptor %+v", st)
	}
	h := view(chain[0].addr, 16)
	typ, sector := binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint64(h[8:])
	status := byte(BlkOK)
	written := uint32(1)
	off := sector * SectorSize
	switch typ {
	case BlkIn, BlkOut:
		for _, c := range chain[1 : len(chain)-1] {
			if (c.flags&descWrite != 0) != (typ == BlkIn) {
				d.t.Fatalf("data descriptor direction %+v for type %d", c, typ)
			}
			if off+uint64(c.len) > uint64(len(d.disk)) {
				status = BlkIOErr
				break
			}
			if typ == BlkIn {
				copy(view(c.addr, c.len), d.disk[off:])
				written += c.len
			} else {
				copy(d.disk[off:], view(c.addr, c.len))
			}
			off += uint64(c.len)
		}
	case BlkFlush:
		d.flushes++
	default:
		status = BlkUnsupp
	}
	view(st.addr, 1)[0] = status
	return written
}

// newBlk brings up a driver against a fake disk of the given sectors.
func newBlk(t *testing.T, d *fakeDev) (*Blk[*fakeDev], []byte) {
	m := mem(t, 3+64)
	var b Blk[*fakeDev]
	tr := Transport[*fakeDev]{R: d}
	if why := tr.Probe(); why != "" {
		t.Fatal(why)
	}
	if why := b.Init(tr, addr(m), addr(m[4096:]), addr(m[8192:])); why != "" {
		t.Fatal(why)
	}
	return &b, m[3*4096:]
}

func wait(t *testing.T, b *Blk[*fakeDev]) uint8 {
	t.Helper()
	done, st := b.Poll()
	if !done {
		t.Fatal("request not complete")
	}
	return st
}

func TestBlkReadWriteFlush(t *testing.T) {
	d := newFake(t, 2048)
	b, buf := newBlk(t, d)
	if d.status != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK {
		t.Fatalf("status %#x after Init", d.status)
	}
	if d.driverFeat != FeatureVersion1|BlkFFlush|BlkFBlkSize|BlkFSegMax {
		t.Fatalf("driver features %#x", d.driverFeat)
	}
	if b.Sectors != 2048 || b.BlockSize != 4096 || b.ReadOnly || !b.CanFlush || b.MaxSegs != 126 || b.Q.Size != 128 {
		t.Fatalf("blk %+v", b)
	}
	for i := range buf[:8192] {
		buf[i] = byte(i*7 + 1)
	}
	segs := []Seg{{Addr: uint64(addr(buf)), Len: 4096}, {Addr: uint64(addr(buf[4096:])), Len: 4096}}
	if why := b.Start(BlkOut, 10, segs); why != "" {
		t.Fatal(why)
	}
	if st := wait(t, b); st != BlkOK {
		t.Fatalf("write status %d", st)
	}
	if !bytes.Equal(d.disk[10*512:10*512+8192], buf[:8192]) {
		t.Fatal("disk does not hold what was written")
	}
	clear(buf[:8192])
	if why := b.Start(BlkIn, 10, segs[:1]); why != "" {
		t.Fatal(why)
	}
	if st := wait(t, b); st != BlkOK || !bytes.Equal(buf[:4096], d.disk[10*512:10*512+4096]) {
		t.Fatalf("read status %d or data differ", st)
	}
	if why := b.Start(BlkFlush, 0, nil); why != "" {
		t.Fatal(why)
	}
	if st := wait(t, b); st != BlkOK || d.flushes != 1 {
		t.Fatalf("flush status %d, %d flushes", st, d.flushes)
	}
	// Checked by the driver before the device sees them.
	for _, c := range []struct {
		typ    uint32
		sector uint64
		segs   []Seg
	}{
		{BlkIn, 2047, segs[:1]}, {BlkOut, 1 << 60, segs[:1]}, {BlkIn, 0, []Seg{{Addr: uint64(addr(buf)), Len: 100}}},
		{BlkFlush, 0, segs[:1]}, {7, 0, nil}, {BlkIn, 0, make([]Seg, 127)},
	} {
		if why := b.Start(c.typ, c.sector, c.segs); why == "" {
			t.Errorf("Start(%d, %d, %d segs) accepted", c.typ, c.sector, len(c.segs))
			wait(t, b)
		}
	}
	// The last sector is readable.
	if why := b.Start(BlkIn, 2047, []Seg{{Addr: uint64(addr(buf)), Len: 512}}); why != "" {
		t.Fatal(why)
	}
	wait(t, b)
}

func TestBlkReadOnly(t *testing.T) {
	d := newFake(t, 64)
	d.features |= BlkFRO
	d.features &^= BlkFFlush
	b, buf := newBlk(t, d)
	if !b.ReadOnly || b.CanFlush {
		t.Fatalf("ReadOnly %v CanFlush %v", b.ReadOnly, b.CanFlush)
	}
	if why := b.Start(BlkOut, 0, []Seg{{Addr: uint64(addr(buf)), Len: 512}}); why == "" {
		t.Fatal("write to a read-only device issued")
	}
	if why := b.Start(BlkFlush, 0, nil); why == "" {
		t.Fatal("flush without the feature issued")
	}
}

func TestNegotiationFailures(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(d *fakeDev)
	}{
		{"legacy", func(d *fakeDev) { d.version = 1 }},
		{"no VERSION_1", func(d *fakeDev) { d.features &^= FeatureVersion1 }},
		{"FEATURES_OK refused", func(d *fakeDev) { d.keepFeatOK = false }},
		{"no queue", func(d *fakeDev) { d.numMax = 0 }},
		{"not a disk", func(d *fakeDev) { d.id = 1 }},
	} {
		d := newFake(t, 8)
		c.mod(d)
		m := mem(t, 3)
		tr := Transport[*fakeDev]{R: d}
		why := tr.Probe()
		if why == "" {
			var b Blk[*fakeDev]
			why = b.Init(tr, addr(m), addr(m[4096:]), addr(m[8192:]))
		}
		if why == "" {
			t.Errorf("%s: the device was accepted", c.name)
		} else {
			t.Logf("%s: %s", c.name, why)
		}
		if c.name != "legacy" && c.name != "not a disk" && d.status&StatusDriverOK != 0 {
			t.Errorf("%s: DRIVER_OK set", c.name)
		}
	}
}

// The queue alone, with the fake device completing in an order and at a
// time the test chooses: indices wrap through 16 bits many times over a
// small queue, and a full queue refuses more work until completions free
// descriptors.
func TestQueueWrapAndFull(t *testing.T) {
	for _, size := range []uint32{4, 8, 128} {
		d := newFake(t, 64)
		d.numMax = size
		d.manual = true
		b, buf := newBlk(t, d)
		q := &b.Q
		if q.Size != uint16(size) || q.Free() != int(size) {
			t.Fatalf("size %d free %d", q.Size, q.Free())
		}
		seg := []Seg{{Addr: uint64(addr(buf)), Len: 16}, {Addr: uint64(addr(buf[512:])), Len: 512}, {Addr: uint64(addr(buf[1024:])), Len: 1, DeviceWrites: true}}
		for i := range buf[512:1024] {
			buf[512+i] = byte(i)
		}
		hdr := buf[:16]
		binary.LittleEndian.PutUint32(hdr, BlkOut)
		total := 0
		for round := 0; total < 70000; round++ {
			// Fill the queue: each request takes 3 descriptors.
			var heads []uint16
			for {
				h, ok := q.Add(seg)
				if !ok {
					break
				}
				heads = append(heads, h)
			}
			if len(heads) != int(size)/3 || q.Free() != int(size)%3 {
				t.Fatalf("size %d: %d requests fit, %d descriptors left", size, len(heads), q.Free())
			}
			if _, _, ok := q.Next(); ok {
				t.Fatal("a completion before the device served")
			}
			// Complete in two halves, to interleave adds and completions.
			k := len(heads) / 2
			if got := d.serve(k); got != k {
				t.Fatalf("device served %d of %d", got, k)
			}
			for i := 0; i < k; i++ {
				h, n, ok := q.Next()
				if !ok || h != heads[i] || n != 1 {
					t.Fatalf("completion %d: head %d (want %d) n %d ok %v", i, h, heads[i], n, ok)
				}
			}
			d.serve(-1)
			for i := k; i < len(heads); i++ {
				if h, _, ok := q.Next(); !ok || h != heads[i] {
					t.Fatalf("completion %d: head %d want %d", i, h, heads[i])
				}
			}
			if q.Pending() || q.Free() != int(size) {
				t.Fatalf("after the round: pending %v, free %d", q.Pending(), q.Free())
			}
			total += len(heads)
		}
		if q.availIdx != uint16(total) || q.lastUsed != uint16(total) || total < 65536 {
			t.Fatalf("indices %d/%d after %d requests", q.availIdx, q.lastUsed, total)
		}
		if !bytes.Equal(d.disk[:512], buf[512:1024]) {
			t.Fatal("the writes did not land")
		}
	}
}

// A device returning a head that is not in flight breaks the queue
// instead of corrupting the free list.
func TestQueueBadUsedEntry(t *testing.T) {
	for _, bad := range []uint32{5, 1000} {
		d := newFake(t, 64)
		d.corrupt = func(id uint32) uint32 { return bad }
		b, buf := newBlk(t, d)
		if why := b.Start(BlkIn, 0, []Seg{{Addr: uint64(addr(buf)), Len: 512}}); why != "" {
			t.Fatal(why)
		}
		if st := wait(t, b); st != BlkBroken || !b.Q.Broken {
			t.Fatalf("used id %d: status %d broken %v", bad, st, b.Q.Broken)
		}
		if why := b.Start(BlkIn, 0, []Seg{{Addr: uint64(addr(buf)), Len: 512}}); why == "" {
			t.Fatal("a broken queue accepted a request")
		}
	}
}
