package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/drivers/virtio"
)

// Disks. A virtio-mmio transport is announced on the command line the
// way Linux takes it, virtio_mmio.device=SIZE@ADDR:IRQ (QEMU's microvm
// machine appends one for every transport with a device behind it); the
// first virtio block device found becomes /dev/vda, a block device file
// the program reads and writes at any offset and length with
// read/write/pread/pwrite, flushes with fsync and sizes with fstat,
// lseek(SEEK_END) or ioctl(BLKGETSIZE64). Everything is set up in kinit,
// before the runtime: the rings, a request page and a bounce buffer come
// from the page allocator, so nothing is allocated afterwards.
//
// Data goes through the bounce buffer (physically contiguous, one
// descriptor per request) rather than the program's own pages: those sit
// anywhere in physical memory, may not be mapped yet (lazy mappings), and
// copyIn/copyOut already turn a bad address into EFAULT.
//
// A request completes by interrupt: the calling thread sleeps in irqWait
// (the vCPU runs other threads, or idles), and vdaInterrupt wakes it.
// Under Amber's VMM the interrupt is an MSI; under QEMU's microvm an
// IOAPIC input the kernel routes (ioapicRoute). With amber.diskirq=off,
// or when the IRQ cannot be routed, completion is polled: the system
// call spins on the used ring. One
// request is in flight at a time (the bounce buffer is one); a thread
// that finds the disk busy sleeps until it is released (vdaLock).

const (
	sIFBLK = 0o060000

	// devVda is /dev/vda's st_rdev: Linux's usual virtblk major 253, minor 0.
	devVda = 253 << 8

	maxVirtioMMIO = 8
	vdaBufPages   = 64 // bounce buffer: 256 KiB per request

	// ioctls of block devices (linux/fs.h).
	blkROGet     = 0x125e
	blkSSZGet    = 0x1268
	blkGetSize64 = 0x80081272

	eROFS = 30
)

var (
	vda       virtio.Blk[virtio.MMIO]
	vdaOn     bool
	vdaIRQ    uint32
	vdaBuf    uintptr // bounce buffer, physically contiguous
	vdaBufLen uintptr
	vdaUseIRQ bool // unless amber.diskirq=off or the IRQ cannot be routed
	vdaBusy   bool // a thread's request (and the bounce buffer) is in flight
	vdaStatus uint8
)

// virtioInit finds the devices named on the command line and brings up
// the first block device. A device that cannot be used is reported on
// the console and left alone; the program runs without it.
//
// QEMU appends its virtio_mmio.device= entries at the very end of the
// command line, after the "--" that starts the program's arguments, so
// such entries count there too when nothing else follows them
// (layoutProcessStack leaves them out of argv).
//
//go:nosplit
func virtioInit(si *boot.StartInfo) {
	vdaUseIRQ = !cmdlineHas(si, "amber.diskirq=off")
	rest := cmdlineBytes(si)
	afterDashes := false
	npending, firm := 0, 0 // firm: entries before "--"
	for {
		tok, r, ok := nextToken(rest, cmdlineScratch[:])
		if !ok {
			break
		}
		rest = r
		if !afterDashes && len(tok) == 2 && tok[0] == '-' && tok[1] == '-' {
			afterDashes, firm = true, npending
			continue
		}
		if !afterDashes && isNetOpt(tok) {
			netOptAdd(tok) // netdev.go
			continue
		}
		if !isVirtioMMIO(tok) {
			if afterDashes {
				npending = firm // a program argument follows: those were arguments too
			}
			continue
		}
		size, base, irq, ok := parseVirtioMMIO(tok[len(virtioKey):])
		if !ok {
			kprint("virtio: cannot parse ")
			consoleWrite(2, tok)
			kprint(" (want SIZE@ADDR:IRQ)\n")
			continue
		}
		if npending < maxVirtioMMIO {
			virtioPending[npending].size, virtioPending[npending].base, virtioPending[npending].irq = size, base, irq
			npending++
		}
	}
	for i := 0; i < npending; i++ {
		if why := virtioProbe(virtioPending[i].size, virtioPending[i].base, virtioPending[i].irq); why != "" {
			kprint("virtio: device at ")
			kprintHex(uint64(virtioPending[i].base))
			kprint(": ")
			kprint(why)
			kprint("\n")
		}
	}
}

// virtioPending holds the devices found while the command line is read.
var virtioPending [maxVirtioMMIO]struct {
	size, base uintptr
	irq        uint32
}

// virtioInitFn is called indirectly: the linker's nosplit check starts
// afresh behind an indirect call, and kinit's chain is deep already.
var virtioInitFn = virtioInit

const virtioKey = "virtio_mmio.device="

//go:nosplit
func isVirtioMMIO(tok []byte) bool { return hasPrefix(tok, virtioKey) }

//go:nosplit
func virtioProbe(size, base uintptr, irq uint32) string {
	const big = 2 << 20
	if size < 0x200 || base&3 != 0 || base/big != (base+size-1)/big {
		return "bad size or address"
	}
	if !mapUncached(base) {
		return "cannot map its registers (RAM or a mapping is there)"
	}
	t := virtio.Transport[virtio.MMIO]{R: virtio.MMIO{Base: base}}
	if why := t.Probe(); why != "" {
		return why
	}
	if t.DeviceID == virtio.DeviceNet {
		return netProbe(t, irq) // netdev.go
	}
	if t.DeviceID != virtio.DeviceBlock || vdaOn {
		return "" // nothing attached, or a device this kernel does not drive
	}
	ring0, ring1, req := allocPage(), allocPage(), allocPage()
	if req == 0 {
		return "out of memory"
	}
	if why := vda.Init(t, ring0, ring1, req); why != "" {
		return why
	}
	// The pages come straight from the bump allocator at boot, so they
	// are contiguous; stop at the first that is not.
	vdaBuf = allocPage()
	vdaBufLen = boot.PageSize
	for vdaBufLen < vdaBufPages*boot.PageSize {
		p := allocPage()
		if p != vdaBuf+vdaBufLen {
			if p != 0 {
				freePage(p)
			}
			break
		}
		vdaBufLen += boot.PageSize
	}
	if vdaBuf == 0 {
		return "out of memory"
	}
	vdaIRQ = irq
	// Under Amber's VMM the number is the MSI vector the device raises
	// (boot/virtio.go), and irqTable has vdaInterrupt at that vector; the
	// queue asks for interrupts unless told not to. Elsewhere (QEMU's
	// microvm) it is an IOAPIC input, routed to that vector on request.
	// The handler's EOI needs the LAPIC's registers mapped, even with
	// amber.tick=off (lapicInit comes later, if at all).
	if vdaUseIRQ && mapLAPIC() && (pvHypercalls && irq == boot.VirtioVector || !pvHypercalls && ioapicRoute(irq, boot.VirtioVector)) {
		vda.Q.SetPolling(false)
	} else {
		vdaUseIRQ = false
	}
	vdaOn = true
	return ""
}

// parseVirtioMMIO reads Linux's SIZE@ADDR:IRQ[:ID] (SIZE and ADDR in C
// notation, SIZE with an optional K/M/G suffix).
//
//go:nosplit
func parseVirtioMMIO(s []byte) (size, base uintptr, irq uint32, ok bool) {
	v, s, ok := parseNum(s)
	if !ok || len(s) == 0 {
		return
	}
	switch s[0] {
	case 'K', 'k':
		v <<= 10
		s = s[1:]
	case 'M', 'm':
		v <<= 20
		s = s[1:]
	case 'G', 'g':
		v <<= 30
		s = s[1:]
	}
	size = uintptr(v)
	if len(s) == 0 || s[0] != '@' {
		return 0, 0, 0, false
	}
	v, s, ok = parseNum(s[1:])
	if !ok || len(s) == 0 || s[0] != ':' {
		return 0, 0, 0, false
	}
	base = uintptr(v)
	v, s, ok = parseNum(s[1:])
	if !ok || v > 0xffff || len(s) != 0 && s[0] != ':' {
		return 0, 0, 0, false
	}
	return size, base, uint32(v), true
}

// parseNum reads a decimal, 0x-hexadecimal or 0-octal number at the
// start of s.
//
//go:nosplit
func parseNum(s []byte) (v uint64, rest []byte, ok bool) {
	b := uint64(10)
	if len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		b, s = 16, s[2:]
	} else if len(s) > 1 && s[0] == '0' {
		b = 8
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			d = 99
		}
		if d >= b {
			break
		}
		if v > (1<<64-1-d)/b {
			return 0, s, false
		}
		v = v*b + d
	}
	return v, s[i:], i > 0
}

// vdaBytes is the disk's size.
//
//go:nosplit
func vdaBytes() int64 { return int64(vda.Sectors * virtio.SectorSize) }

// vdaDo runs one request on the bounce buffer and waits for it.
//
//go:nosplit
func vdaDo(typ uint32, sector uint64, n uintptr) int64 {
	var seg [1]virtio.Seg
	segs := seg[:0]
	if n > 0 {
		seg[0] = virtio.Seg{Addr: uint64(vdaBuf), Len: uint32(n)}
		segs = seg[:1]
	}
	if why := vda.Start(typ, sector, segs); why != "" {
		if typ == virtio.BlkOut && vda.ReadOnly {
			return -eROFS
		}
		return -eIO
	}
	if vdaWait() != virtio.BlkOK {
		return -eIO
	}
	return 0
}

// vdaWait waits for the request in flight and returns its status: asleep
// until vdaInterrupt when the device interrupts, else spinning.
//
//go:nosplit
func vdaWait() uint8 {
	if vdaUseIRQ {
		irqWait(vdaKey, vdaPolled)
		return vdaStatus
	}
	for {
		if done, st := vda.Poll(); done {
			return st
		}
	}
}

// vdaKey is what a thread waiting for the disk waits for (irqWait).
const vdaKey = boot.VirtioVector

// vdaPolled is vdaWait's test: the request completed (status in
// vdaStatus).
//
//go:nosplit
func vdaPolled() bool {
	done, st := vda.Poll()
	if done {
		vdaStatus = st
	}
	return done
}

// vdaLock takes the disk for the running thread's request, sleeping while
// another thread's is in flight; vdaUnlock gives it back. Only system
// calls take it (a thread is switched only where it blocks), so a flag is
// enough.
//
//go:nosplit
func vdaLock() {
	for vdaBusy {
		block(waitDisk, 0, 0) // signals do not interrupt: the holder finishes soon
	}
	vdaBusy = true
}

//go:nosplit
func vdaUnlock() {
	vdaBusy = false
	wakeAll(waitDisk)
}

// vdaInterrupt is the disk's interrupt handler (irqTable's row for
// boot.VirtioVector, the MSI vector under Amber's VMM): it acknowledges
// the device (two MMIO exits: the device raises again only once its
// interrupt status was cleared) and wakes the thread waiting for the
// request. With polling (the queue asks for no interrupts) the device
// still interrupts when it needs a reset.
//
//go:nosplit
func vdaInterrupt(tf *boot.TrapFrame, xsave uintptr) uintptr {
	if vdaOn {
		vda.T.AckInterrupt()
		irqWake(vdaKey)
	}
	return netInterrupt(tf, xsave) // the NIC, when it is transport 0
}

// vdaIO moves n bytes between the program's buf and the disk at off,
// sector-aligned chunks at a time through the bounce buffer; a write
// that covers a sector in part reads it first.
//
//go:nosplit
func vdaIO(write bool, buf, n uintptr, off int64) int64 {
	vdaLock()
	r := vdaIOLocked(write, buf, n, off)
	vdaUnlock()
	return r
}

//go:nosplit
func vdaIOLocked(write bool, buf, n uintptr, off int64) int64 {
	size := vdaBytes()
	if off < 0 {
		return -eINVAL
	}
	if off >= size {
		if write && n > 0 {
			return -eNOSPC
		}
		return 0
	}
	if uint64(n) > uint64(size-off) {
		n = uintptr(size - off)
	}
	done := uintptr(0)
	for done < n {
		pos := uint64(off) + uint64(done)
		start := pos &^ (virtio.SectorSize - 1)
		k := n - done
		if max := vdaBufLen - uintptr(pos-start); k > max {
			k = max
		}
		end := (pos + uint64(k) + virtio.SectorSize - 1) &^ (virtio.SectorSize - 1)
		span := uintptr(end - start)
		sector := start / virtio.SectorSize
		var r int64
		if !write || pos != start || pos+uint64(k) != end {
			r = vdaDo(virtio.BlkIn, sector, span)
		}
		if r == 0 && write {
			if !copyIn(ptr(vdaBuf+uintptr(pos-start)), buf+done, k) {
				r = -eFAULT
			} else {
				r = vdaDo(virtio.BlkOut, sector, span)
			}
		} else if r == 0 && !copyOut(buf+done, ptr(vdaBuf+uintptr(pos-start)), k) {
			r = -eFAULT
		}
		if r < 0 {
			if done > 0 {
				return int64(done)
			}
			return r
		}
		done += k
	}
	return int64(done)
}

// vdaFlush makes the completed writes durable (a no-op for a device
// without a write cache to flush).
//
//go:nosplit
func vdaFlush() int64 {
	if !vda.CanFlush {
		return 0
	}
	vdaLock()
	r := vdaDo(virtio.BlkFlush, 0, 0)
	vdaUnlock()
	return r
}

// openBlk opens the block device inode ino; a read-only disk refuses
// write access (EROFS).
//
//go:nosplit
func openBlk(ino uint32, flags uint64) int64 {
	if ip(ino).rdev != devVda || !vdaOn {
		return -eNXIO
	}
	if vdaClaimed {
		return -eBUSY // the persistent file system's (datafile.go)
	}
	if flags&oAccmode != oRdonly && vda.ReadOnly {
		return -eROFS
	}
	fd := allocFD(fdBlk, flags)
	if fd >= 0 {
		ofiles[fds[fd].of-1].ino = ino
		ip(ino).opens++
	}
	return fd
}

// blkFile is an open block device.
type blkFile struct{ baseFile }

//go:nosplit
func (*blkFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	off := pos
	if pos < 0 {
		off = o.off
	}
	r := vdaIO(false, buf, n, off)
	if pos < 0 && r > 0 {
		o.off += r
	}
	return r
}

//go:nosplit
func (*blkFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	off := pos
	if pos < 0 {
		off = o.off
	}
	r := vdaIO(true, buf, n, off)
	if pos < 0 && r > 0 {
		o.off += r
	}
	return r
}

//go:nosplit
func (*blkFile) stat(o *ofile, st *statT) { fillStat(o.ino, st) }

//go:nosplit
func (*blkFile) ready(o *ofile) uint32 { return epollIn | epollOut }

//go:nosplit
func (*blkFile) seek(o *ofile, off int64, whence uint64) int64 {
	switch whence {
	case seekSet:
	case seekCur:
		off += o.off
	case seekEnd:
		off += vdaBytes()
	default:
		return -eINVAL
	}
	if off < 0 {
		return -eINVAL
	}
	o.off = off
	return off
}

//go:nosplit
func (*blkFile) ioctl(o *ofile, req, arg uint64) int64 {
	var v uint64
	n := uintptr(4)
	switch req {
	case blkGetSize64:
		v, n = uint64(vdaBytes()), 8
	case blkSSZGet:
		v = virtio.SectorSize
	case blkROGet:
		if vda.ReadOnly {
			v = 1
		}
	default:
		return -eNOTTY
	}
	if !copyOut(uintptr(arg), unsafe.Pointer(&v), n) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func (*blkFile) release(o *ofile) {
	ip(o.ino).opens--
	iput(o.ino)
}

// sysFsync serves fsync and fdatasync: the disk flushes its cache; the
// in-memory file system has nothing to do.
//
//go:nosplit
func sysFsync(f *sysFrame) int64 {
	o := getFile(f.rdi)
	if o == nil {
		return -eBADF
	}
	if o.kind == fdBlk {
		return vdaFlush()
	}
	if o.kind == fdData {
		return dataFsync(o) // datafile.go
	}
	return 0
}

// The IOAPIC of QEMU's microvm (Amber's VMM has none), at its usual
// address: an input is routed to a vector of the local APIC by its
// redirection entry (two 32-bit registers reached through IOREGSEL and
// IOWIN).
const (
	ioapicBase   = 0xfec00000
	ioapicSel    = 0x00
	ioapicWin    = 0x10
	ioapicVerReg = 0x01
	ioapicRedir  = 0x10 // entry n: 0x10+2n (low word), 0x11+2n (high)
)

//go:nosplit
func ioapicWrite(reg, v uint32) {
	*u32at(ioapicBase + ioapicSel) = reg
	*u32at(ioapicBase + ioapicWin) = v
}

//go:nosplit
func ioapicRead(reg uint32) uint32 {
	*u32at(ioapicBase + ioapicSel) = reg
	return *u32at(ioapicBase + ioapicWin)
}

// ioapicRoute sends IOAPIC input pin to vector on this CPU's local APIC:
// fixed delivery, physical destination, active high, edge-triggered —
// the virtio-mmio line stays high until the handler acknowledges the
// device, and an edge per rise is all the driver needs (the waiter looks
// at the used ring after every wake-up), while a level entry would
// deliver again at every EOI that comes before the acknowledge.
//
//go:nosplit
func ioapicRoute(pin uint32, vector uint8) bool {
	if !mapUncached(ioapicBase) {
		return false
	}
	ver := ioapicRead(ioapicVerReg)
	if ver == 0xffffffff || pin > ver>>16&0xff {
		return false
	}
	id := lapicRead(lapicID) >> 24
	ioapicWrite(ioapicRedir+2*pin+1, id<<24)
	ioapicWrite(ioapicRedir+2*pin, uint32(vector))
	return true
}
