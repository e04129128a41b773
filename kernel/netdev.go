package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/drivers/virtio"
)

// The network interface. The first virtio-net device found on the
// command line (blkdev.go's virtioInit) is set up in kinit like the
// disk: rings and 128 receive plus 128 transmit buffers of 2 KiB from the
// page allocator, the receive queue kept full. The network service
// (kernel/netsvc) opens it with amber_service(svcNetDev) as a descriptor
// of whole Ethernet frames, each after its 12-byte virtio_net_hdr (as a
// tap device with IFF_VNET_HDR carries them): a read takes one received
// frame (truncated to the buffer, like a packet socket), a write sends
// one (a header and 14 to 1514 bytes), and epoll reports it readable
// while received frames wait and writable while a transmit buffer is
// free. The header carries the checksum offloads the driver negotiated
// (drivers/virtio/net.go): a read's header has only the flags the device
// may set (DATA_VALID, or NEEDS_CSUM within the frame), a write's may
// ask for NEEDS_CSUM within the frame and nothing else (EINVAL). The descriptor is
// non-blocking for the service's reads and writes, so its goroutines
// park in the runtime's netpoller.
//
// What makes a parked reader ready is the used ring moving (netWake):
//
//   - Under Amber's VMM the receive queue interrupts (the command line's
//     IRQ is the MSI vector, boot.VirtioVector+transport); the VMM's
//     interrupt also ends an HCIdle. netInterrupt acknowledges the device
//     and wakes the pollers at once (pollNotify, irq.go). The interrupt
//     is then off while the reader drains the ring (EVENT_IDX's one-shot
//     used_event, or the ring's flag), and a read that finds the ring
//     empty turns it on again: a burst of frames costs one interrupt and
//     its acknowledge (two MMIO exits), not one per frame.
//   - Under QEMU's microvm the IRQ is an IOAPIC input the kernel does not
//     program, so nothing interrupts: the idle loop (idleWait), which
//     spins there anyway, watches the used rings, and so does schedule.
//
// Either way schedule and idle compare the rings' indices with what was
// last seen, so a frame that lands while the kernel runs is noticed at
// the next switch; sysmon's periodic non-blocking epoll_wait sees it as
// well, since readiness is computed from the rings.

const (
	// amberNetInfo is the NIC descriptor's ioctl returning netInfo.
	amberNetInfo = 0x414d5302
)

var (
	vnet       virtio.Net[virtio.MMIO]
	vnetOn     bool
	vnetIRQ    uint32
	vnetUseIRQ bool
	vnetOpen   bool
	vnetSeen   uint32 // the rings' Gen at the last netWake
	vnetRings  [4]uintptr
	vnetBufs   [virtio.NetBufPages]uintptr
)

// netInfo is what amberNetInfo returns.
type netInfo struct {
	mac      [6]byte
	hasMAC   uint8
	_        uint8
	mtu      uint32
	dropped  uint64
	features uint64 // negotiated
	offered  uint64 // the device's
	badTx    uint64 // headers SendHdr refused
}

// netProbe brings up the network device behind t (probed).
//
//go:nosplit
func netProbe(t virtio.Transport[virtio.MMIO], irq uint32) string {
	if vnetOn {
		return "a second network device is not used"
	}
	for i := range vnetRings {
		vnetRings[i] = allocPage()
		if vnetRings[i] == 0 {
			return "out of memory"
		}
	}
	for i := range vnetBufs {
		vnetBufs[i] = allocPage()
		if vnetBufs[i] == 0 {
			return "out of memory"
		}
	}
	// Under Amber's VMM the number is the MSI vector, with a row in
	// irqTable (irq.go) for every transport's.
	vnetUseIRQ = pvHypercalls && irq >= boot.VirtioVector && irq < boot.VirtioVector+maxVirtioMMIO
	if why := vnet.Init(t, &vnetRings, &vnetBufs, vnetUseIRQ); why != "" {
		return why
	}
	vnetIRQ = irq
	vnetSeen = vnet.Gen()
	vnetOn = true
	netRestoreInit() // netrestore.go
	return ""
}

// netWake wakes the threads waiting in poll or epoll if the device
// returned buffers since the last call.
//
//go:nosplit
func netWake() {
	if !vnetOn {
		return
	}
	if g, r := vnet.Gen(), netRestoreWake(); g != vnetSeen || r {
		vnetSeen = g
		pollNotify()
	}
}

// netMoved reports whether netWake has something to wake (idleWait's
// spin under other VMMs).
//
//go:nosplit
func netMoved() bool { return vnetOn && vnet.Gen() != vnetSeen }

// netInterrupt serves the NIC's MSI under Amber's VMM (irqTable's rows
// for the virtio vectors after the disk's): it acknowledges the device
// and wakes the pollers if the rings moved. Device handlers never nest
// and may run inside a system call (irq.go), which is what pollNotify is
// made for; its count of wakes also ends an idle that began before.
//
//go:nosplit
func netInterrupt(tf *boot.TrapFrame, xsave uintptr) uintptr {
	if vnetOn && uint32(tf.Vector&0xff) == vnetIRQ {
		vnet.T.AckInterrupt()
		// Quiet until the reader has drained the ring (read re-arms).
		vnet.RX.DisarmInterrupt()
		netWake()
	}
	return 0
}

// openNetDev is amber_service(svcNetDev): the NIC as a descriptor, one
// at a time.
//
//go:nosplit
func openNetDev(flags uint64) int64 {
	if flags&^(oNonblock|oCloexec) != 0 {
		return -eINVAL
	}
	if !vnetOn {
		return -eNODEV
	}
	if vnetOpen {
		return -eBUSY
	}
	fd := allocFD(fdNetDev, oRdwr|flags)
	if fd >= 0 {
		vnetOpen = true
		vnetReadRestores = restores()
	}
	return fd
}

// netDevFile is the open NIC.
type netDevFile struct{ baseFile }

//go:nosplit
func (*netDevFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	if netTakeRestore() { // netrestore.go
		return -eNETRESET
	}
	for {
		seen := pollSeq // before looking: a frame landing after it ends the wait
		a, k, ok := vnet.Recv()
		if ok {
			var h [virtio.NetHdrLen]byte
			flags, start, off := vnet.RxHdr(k)
			h[0] = flags
			h[6], h[7], h[8], h[9] = byte(start), byte(start>>8), byte(off), byte(off>>8)
			m := uintptr(virtio.NetHdrLen + k)
			if m > n {
				m = n
			}
			r := int64(m)
			hl := m
			if hl > virtio.NetHdrLen {
				hl = virtio.NetHdrLen
			}
			if !copyOut(buf, unsafe.Pointer(&h[0]), hl) || (m > hl && !copyOut(buf+hl, ptr(a), m-hl)) {
				r = -eFAULT
			}
			vnet.Release()
			return r
		}
		// The ring is drained: the next frame interrupts again, unless
		// one landed before the device saw the request.
		if vnetUseIRQ && vnet.RX.ArmInterrupt() {
			continue
		}
		if o.flags&oNonblock != 0 {
			return -eAGAIN
		}
		if r, done := pollBlock(0, seen); done {
			return r
		}
	}
}

//go:nosplit
func (*netDevFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	if n < virtio.NetHdrLen+14 || n > virtio.NetHdrLen+virtio.NetMaxFrame {
		return -eMSGSIZE
	}
	var h [virtio.NetHdrLen]byte
	if !copyIn(unsafe.Pointer(&h[0]), buf, virtio.NetHdrLen) {
		return -eFAULT
	}
	k := int(n) - virtio.NetHdrLen
	flags := h[0]
	start, off := uint16(h[6])|uint16(h[7])<<8, uint16(h[8])|uint16(h[9])<<8
	if h[1] != 0 || (flags != 0 && (flags != virtio.NetHdrNeedsCsum || vnet.T.Features&virtio.NetFCsum == 0 || int(start)+int(off)+2 > k)) {
		return -eINVAL // a GSO type, or a checksum request the device cannot honour
	}
	for {
		seen := pollSeq
		a, ok := vnet.TxBuf()
		if ok {
			if !copyIn(ptr(a), buf+virtio.NetHdrLen, uintptr(k)) {
				return -eFAULT
			}
			if !vnet.SendHdr(k, flags, start, off) {
				return -eIO
			}
			return int64(n)
		}
		if vnet.TX.Broken {
			return -eIO
		}
		if o.flags&oNonblock != 0 {
			return -eAGAIN
		}
		if r, done := pollBlock(0, seen); done {
			return r
		}
	}
}

//go:nosplit
func (*netDevFile) ready(o *ofile) uint32 {
	r := uint32(0)
	if vnet.RxReady() || netRestorePending() {
		r |= epollIn
	}
	if vnet.CanSend() {
		r |= epollOut
	}
	if vnet.RX.Broken || vnet.TX.Broken {
		r |= epollErr
	}
	return r
}

//go:nosplit
func (*netDevFile) pollable(o *ofile) bool { return true }

//go:nosplit
func (*netDevFile) gen(o *ofile) (uint32, bool) { return vnet.Gen() + uint32(restores()), true }

//go:nosplit
func (*netDevFile) stat(o *ofile, st *statT) {
	st.dev = fsDev + 2
	st.nlink = 1
	st.mode = sIFCHR | 0o600
	st.blksize = pageSize
}

//go:nosplit
func (*netDevFile) ioctl(o *ofile, req, arg uint64) int64 {
	if req == amberNetOpts {
		if netOptsLen > 0 && !copyOut(uintptr(arg), unsafe.Pointer(&netOpts[0]), uintptr(netOptsLen)) {
			return -eFAULT
		}
		return int64(netOptsLen)
	}
	if req != amberNetInfo {
		return -eNOTTY
	}
	var ni netInfo
	netRefreshMAC()
	ni.mac = vnet.MAC
	if vnet.HasMAC {
		ni.hasMAC = 1
	}
	ni.mtu = virtio.NetMaxFrame - 14
	ni.dropped = vnet.Dropped
	ni.features = vnet.T.Features
	ni.offered = vnet.T.Offered
	ni.badTx = vnet.BadTx
	if !copyOut(uintptr(arg), unsafe.Pointer(&ni), unsafe.Sizeof(ni)) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func (*netDevFile) release(o *ofile) { vnetOpen = false }

// The interface's configuration from the command line (amber.ip=,
// amber.gw=, amber.dns=, ...; netsvc parses them): the tokens as they
// were, separated by spaces, for the service's amberNetOpts ioctl.
const (
	netOptsMax = 512

	// amberNetOpts is the NIC descriptor's ioctl copying netOpts (a
	// buffer of netOptsMax bytes) and returning its length.
	amberNetOpts = 0x414d5303
)

var (
	netOpts    [netOptsMax]byte
	netOptsLen int
)

//go:nosplit
func isNetOpt(tok []byte) bool {
	return hasPrefix(tok, "amber.ip=") || hasPrefix(tok, "amber.ip6=") ||
		hasPrefix(tok, "amber.gw=") || hasPrefix(tok, "amber.dns=") ||
		hasPrefix(tok, "amber.hostname=")
}

//go:nosplit
func netOptAdd(tok []byte) {
	if netOptsLen+len(tok)+1 > netOptsMax {
		kprint("amber: network options too long; ignored: ")
		consoleWrite(2, tok)
		kprint("\n")
		return
	}
	if netOptsLen > 0 {
		netOpts[netOptsLen] = ' '
		netOptsLen++
	}
	netOptsLen += copy(netOpts[netOptsLen:], tok)
}
