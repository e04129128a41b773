package kernel

import "unsafe"

// Services: the hand-off from the kernel core to ordinary Go code.
//
// Some files cannot be served by core code: a socket lives in a TCP/IP
// stack written in ordinary Go, a file on the persistent disk in objstore.
// That code runs as goroutines of the program's own runtime (services),
// and the core talks to them through two kinds of file:
//
//   - a service queue (fdSvcQueue), which a service opens with
//     amber_service(svcOpen) and reads requests from. It is pollable, so
//     the service goroutine parks in the runtime's netpoller while it is
//     empty and the kernel's epoll wakes it when the core posts a request;
//   - service objects (fdSvcObject), the program's side: descriptors
//     whose reads and writes go through two rings in core memory. A read
//     that finds nothing posts a request and returns EAGAIN (the program's
//     goroutine parks in the netpoller, which lets the scheduler run the
//     service goroutine on the same P) or, on a blocking descriptor,
//     waits in the core. The service fills and drains the rings with
//     amber_service(svcPush/svcPull) and answers calls with svcComplete.
//
// So no hand-off waits for the Go runtime's sysmon to retake a P: a
// service is scheduled like any goroutine woken by the netpoller
// (docs/kernel.md, "Services", has the design and the figures). The
// service side's API is package kernel/service.

const (
	maxServices   = 4
	svcQueueSize  = 512 // requests pending per service; a power of two
	maxSvcObjects = 128

	svcAmberCall = 0x414d5301 // ioctl on a service object: a synchronous call
)

// Operations of amber_service (rdi).
const (
	svcOpen     = iota // (flags) -> queue fd
	svcObject          // (queue fd, cookie, flags, *handle) -> object fd
	svcPush            // (queue fd, handle, buf, n, errno) -> bytes taken; n == 0: end of data, errno != 0: its read fails so once (a reset)
	svcPull            // (queue fd, handle, buf, n) -> bytes given; 0: the program closed
	svcComplete        // (queue fd, handle, seq, result) -> 0
	svcDrop            // (queue fd, handle) -> 0: the service is done with the object
	_                  // 6, 7: svcDataMount, svcDataDone (datafile.go)
	_
	svcNet    // (queue fd) -> 0: the queue serves AF_INET and AF_INET6 sockets (netsock.go)
	svcEvents // (queue fd, handle, on, off) -> 0: readiness the service asserts or masks
	svcName   // (queue fd, handle, which, addr, len) -> 0: a socket's local (0) or peer (1) address
	svcNetDev // (queue fd, flags) -> NIC fd: the network interface's frames (netdev.go)
	_         // 12: svcDataSynced (datafile.go)
)

// Requests the core posts (svcRequest.op).
const (
	svcReqWrite = iota + 1 // the program wrote: data waits in the object's ring
	svcReqRead             // the program waits for data
	svcReqCall             // a synchronous call: answer with svcComplete(seq)
	svcReqClose            // the program closed its last descriptor
	_                      // 5, 6: svcReqData, svcReqDataClose (datafile.go)
	_
	svcReqSock // a socket call (netsock.go): op | sub-operation<<16
	_          // 8: svcReqDataSync (datafile.go)
)

// svcRequest is one record read from a service queue: 64 bytes, the
// layout package kernel/service decodes.
type svcRequest struct {
	op     uint32
	handle uint32 // object index | generation<<16
	cookie uint64 // the service's own name for the object
	seq    uint64 // svcReqCall: the call to complete
	args   [5]uint64
}

type serviceT struct {
	used       bool
	ring       [svcQueueSize]svcRequest
	head, tail uint32 // requests ever taken / posted
	gen        uint32
}

type svcObjectT struct {
	used    bool
	svc     int32
	gen     uint16
	cookie  uint64
	rx, tx  int32 // pipes: service -> program, program -> service
	open    bool  // the program still has descriptors
	posted  uint8 // svcReqRead/svcReqWrite bits already queued and not yet taken
	callSeq uint64
	callRes int64
	calling bool // a call is outstanding (calls on one object go one at a time)
	done    bool // the call's answer is in callRes
	// Readiness the service decides (svcEvents): evOn is reported
	// whatever the rings hold, evOff hides what they would report (a
	// TCP socket that is not connected yet is not writable).
	evOn, evOff uint32
	evGen       uint32
	inet, dgram bool  // an AF_INET or AF_INET6 socket (netsock.go); a datagram one
	wrShut      bool  // shut down for writing: writes fail with EPIPE
	rdErr       int32 // the errno the read at the end of data gives once (ECONNRESET), then end of file
	family      uint16
	names       [2][netNameMax]byte // local and peer address (svcName)
	nameLen     [2]uint8
}

var (
	services   [maxServices]serviceT
	svcObjects [maxSvcObjects]svcObjectT
	svcSeq     uint64
)

// svcPost queues a request for service s; false when its queue is full.
//
//go:nosplit
func svcPost(s *serviceT, r *svcRequest) bool {
	if s.tail-s.head >= svcQueueSize {
		return false
	}
	s.ring[s.tail%svcQueueSize] = *r
	s.tail++
	s.gen++
	wakeAll(waitPoll)
	return true
}

// svcNotify posts a data request (svcReqRead or svcReqWrite) for object
// ob unless one is already queued.
//
//go:nosplit
func svcNotify(i int, op uint32) {
	ob := &svcObjects[i]
	bit := uint8(1) << op
	if ob.posted&bit != 0 {
		return
	}
	r := svcRequest{op: op, handle: svcHandle(i), cookie: ob.cookie}
	if svcPost(&services[ob.svc], &r) {
		ob.posted |= bit
	}
}

//go:nosplit
func svcHandle(i int) uint32 { return uint32(i) | uint32(svcObjects[i].gen)<<16 }

// svcLookup resolves a handle the service gave for queue q.
//
//go:nosplit
func svcLookup(q int32, h uint64) (int, *svcObjectT) {
	i := int(h & 0xffff)
	if h>>32 != 0 || i >= maxSvcObjects {
		return -1, nil
	}
	ob := &svcObjects[i]
	if !ob.used || ob.svc != q || uint64(ob.gen) != h>>16 {
		return -1, nil
	}
	return i, ob
}

// svcFree releases object i once neither side holds it.
//
//go:nosplit
func svcFree(ob *svcObjectT) {
	for _, pi := range [2]int32{ob.rx, ob.tx} {
		p := &pipes[pi]
		freePage(p.buf)
		p.buf, p.used = 0, false
	}
	ob.used = false
	ob.gen++
}

// sysAmberService serves the service side.
//
//go:nosplit
func sysAmberService(f *sysFrame) int64 {
	if f.rdi == svcOpen {
		return svcOpenQueue(f.rsi)
	}
	o := getFile(f.rsi)
	if o == nil {
		return -eBADF
	}
	if o.kind != fdSvcQueue {
		return -eINVAL
	}
	q := o.pipe
	if f.rdi == svcDataMount || f.rdi == svcDataDone || f.rdi == svcDataSynced {
		return dataService(f.rdi, q, f.rdx, int64(f.r10)) // datafile.go
	}
	if f.rdi == svcObject {
		return svcNewObject(q, f.rdx, f.r10, uintptr(f.r8))
	}
	if f.rdi == svcNet {
		netSvc = q
		return 0
	}
	if f.rdi == svcNetDev {
		return openNetDev(f.rdx)
	}
	i, ob := svcLookup(q, f.rdx)
	if ob == nil {
		return -eBADF
	}
	switch f.rdi {
	case svcPush:
		if f.r8 == 0 && f.r9 != 0 {
			if f.r9 > 4095 {
				return -eINVAL
			}
			ob.rdErr = int32(f.r9)
		}
		return svcPushData(i, ob, uintptr(f.r10), uintptr(f.r8))
	case svcPull:
		return svcPullData(i, ob, uintptr(f.r10), uintptr(f.r8))
	case svcComplete:
		if !ob.calling || ob.done || ob.callSeq != f.r10 {
			return -eINVAL
		}
		ob.callRes, ob.done = int64(f.r8), true
		wakeAll(waitPoll)
		return 0
	case svcName:
		if f.r10 > 1 || f.r9 > netNameMax {
			return -eINVAL
		}
		if f.r9 > 0 && !copyIn(unsafe.Pointer(&ob.names[f.r10]), uintptr(f.r8), uintptr(f.r9)) {
			return -eFAULT
		}
		ob.nameLen[f.r10] = uint8(f.r9)
		if ob.family == 0 && f.r9 >= 2 {
			ob.family = uint16(ob.names[f.r10][0]) // an accepted socket's
		}
		return 0
	case svcEvents:
		ob.evOn, ob.evOff = uint32(f.r10), uint32(f.r8)
		ob.evGen++
		wakeAll(waitPoll)
		return 0
	case svcDrop:
		rx, tx := &pipes[ob.rx], &pipes[ob.tx]
		if tx.readers == 0 {
			return -eBADF // dropped already (end of data alone is not a drop)
		}
		rx.writers, tx.readers = 0, 0
		pipeChanged(rx)
		pipeChanged(tx)
		if ob.calling && !ob.done {
			ob.callRes, ob.done = -eIO, true
		}
		if !ob.open {
			svcFree(ob)
		}
		return 0
	}
	return -eINVAL
}

//go:nosplit
func svcOpenQueue(flags uint64) int64 {
	if flags&^(oNonblock|oCloexec) != 0 {
		return -eINVAL
	}
	for i := range services {
		s := &services[i]
		if s.used {
			continue
		}
		fd := allocFD(fdSvcQueue, oRdonly|flags)
		if fd < 0 {
			return fd
		}
		s.used = true
		s.head, s.tail = 0, 0
		ofiles[fds[fd].of-1].pipe = int32(i)
		return fd
	}
	return -eNFILE
}

//go:nosplit
func svcNewObject(q int32, cookie, flags uint64, handleOut uintptr) int64 {
	if flags&^(oNonblock|oCloexec) != 0 {
		return -eINVAL
	}
	if handleOut != 0 && !userOK(handleOut, 8) {
		return -eFAULT
	}
	for i := range svcObjects {
		ob := &svcObjects[i]
		if ob.used {
			continue
		}
		rx := newPipe()
		if rx < 0 {
			return int64(rx)
		}
		pipes[rx].readers, pipes[rx].writers = 1, 1
		tx := newPipe()
		if tx < 0 {
			freePage(pipes[rx].buf)
			pipes[rx].buf, pipes[rx].used = 0, false
			return int64(tx)
		}
		pipes[tx].readers, pipes[tx].writers = 1, 1
		fd := allocFD(fdSvcObject, oRdwr|flags)
		if fd < 0 {
			for _, pi := range [2]int32{rx, tx} {
				freePage(pipes[pi].buf)
				pipes[pi].buf, pipes[pi].used = 0, false
			}
			return fd
		}
		gen := ob.gen
		*ob = svcObjectT{used: true, svc: q, gen: gen, cookie: cookie, rx: rx, tx: tx, open: true}
		ob.inet = q == netSvc // an accepted network socket
		ofiles[fds[fd].of-1].pipe = int32(i)
		if handleOut != 0 {
			h := uint64(svcHandle(i))
			copyOut(handleOut, unsafe.Pointer(&h), 8)
		}
		return fd
	}
	return -eNFILE
}

//go:nosplit
func svcPushData(i int, ob *svcObjectT, buf, n uintptr) int64 {
	p := &pipes[ob.rx]
	if p.writers == 0 {
		return -eBADF
	}
	if n == 0 { // end of data: the program reads 0 once the ring is empty
		p.writers = 0
		pipeChanged(p)
		return 0
	}
	if p.readers == 0 {
		return -ePIPE
	}
	space := pipeSize - uintptr(p.wpos-p.rpos)
	if space == 0 {
		return -eAGAIN
	}
	if n > space {
		n = space
	}
	c := ringCopy(p, buf, n, true)
	if c == 0 {
		return -eFAULT
	}
	p.wpos += uint64(c)
	ob.posted &^= 1 << svcReqRead
	pipeChanged(p)
	return int64(c)
}

//go:nosplit
func svcPullData(i int, ob *svcObjectT, buf, n uintptr) int64 {
	p := &pipes[ob.tx]
	avail := uintptr(p.wpos - p.rpos)
	if avail == 0 {
		ob.posted &^= 1 << svcReqWrite
		if p.writers == 0 {
			return 0
		}
		return -eAGAIN
	}
	if n > avail {
		n = avail
	}
	c := ringCopy(p, buf, n, false)
	if c == 0 && n > 0 {
		return -eFAULT
	}
	p.rpos += uint64(c)
	if p.wpos == p.rpos {
		ob.posted &^= 1 << svcReqWrite
	}
	pipeChanged(p)
	return int64(c)
}

// svcCall makes a synchronous call to object i's service and waits for
// its answer: the result, or -EINTR when a signal came first (the
// service's late answer is then dropped).
//
//go:nosplit
func svcCall(o *ofile, arg uint64) int64 {
	var args [5]uint64
	args[0] = arg
	return svcCallOp(o, svcReqCall, &args)
}

// svcCallOp is svcCall with the request's op and arguments.
//
//go:nosplit
func svcCallOp(o *ofile, op uint32, args *[5]uint64) int64 {
	ob := &svcObjects[o.pipe]
	for ob.calling {
		if r := blockHeld(o); r == wokeSignal {
			return -eINTR
		} else if r == -1 {
			return -eBADF
		}
	}
	if pipes[ob.tx].readers == 0 || ob.svc < 0 {
		return -ePIPE // the service dropped the object
	}
	svcSeq++
	r := svcRequest{op: op, handle: svcHandle(int(o.pipe)), cookie: ob.cookie, seq: svcSeq, args: *args}
	if !svcPost(&services[ob.svc], &r) {
		return -eAGAIN
	}
	ob.calling, ob.done, ob.callSeq = true, false, svcSeq
	sysmonKick()
	// A socket call on a non-blocking descriptor is answered without
	// waiting for the network, so a signal does not interrupt it (Go's
	// net does not retry socket, bind or listen on EINTR): it is taken
	// as the call returns, as after a restarted call.
	restart := op&0xffff == svcReqSock && o.flags&oNonblock != 0
	for !ob.done {
		if why := blockHeld(o); why == wokeSignal && restart {
			continue
		} else if why == wokeSignal || why == -1 {
			ob.calling = false
			wakeAll(waitPoll)
			if why == -1 {
				return -eBADF
			}
			return -eINTR
		}
	}
	ob.calling = false
	wakeAll(waitPoll)
	return ob.callRes
}

// svcQueueFile is a service's queue: reads return whole requests.
type svcQueueFile struct{ baseFile }

//go:nosplit
func (*svcQueueFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	const size = unsafe.Sizeof(svcRequest{})
	if n < size {
		return -eINVAL
	}
	s := &services[o.pipe]
	for s.head == s.tail {
		if o.flags&oNonblock != 0 {
			return -eAGAIN
		}
		switch blockHeld(o) {
		case wokeSignal:
			return -eINTR
		case -1:
			return -eBADF
		}
	}
	done := uintptr(0)
	for s.head != s.tail && n-done >= size {
		r := &s.ring[s.head%svcQueueSize]
		if r.op == svcReqRead || r.op == svcReqWrite {
			// Taken: the next change posts again.
			if i, ob := svcLookup(o.pipe, uint64(r.handle)); ob != nil {
				svcObjects[i].posted &^= 1 << r.op
			}
		}
		if !copyOut(buf+done, unsafe.Pointer(r), size) {
			if done == 0 {
				return -eFAULT
			}
			break
		}
		s.head++
		done += size
	}
	s.gen++
	return int64(done)
}

//go:nosplit
func (*svcQueueFile) write(o *ofile, buf, n uintptr, pos int64) int64 { return -eBADF }

//go:nosplit
func (*svcQueueFile) ready(o *ofile) uint32 {
	if s := &services[o.pipe]; s.head != s.tail {
		return epollIn
	}
	return 0
}

//go:nosplit
func (*svcQueueFile) pollable(o *ofile) bool { return true }

//go:nosplit
func (*svcQueueFile) gen(o *ofile) (uint32, bool) { return services[o.pipe].gen, true }

// release: the service is gone; its objects read end of data and refuse
// writes, its outstanding calls fail with EIO.
//
//go:nosplit
func (*svcQueueFile) release(o *ofile) {
	for i := range svcObjects {
		ob := &svcObjects[i]
		if !ob.used || ob.svc != o.pipe {
			continue
		}
		pipes[ob.rx].writers, pipes[ob.tx].readers = 0, 0
		pipeChanged(&pipes[ob.rx])
		if ob.calling && !ob.done {
			ob.callRes, ob.done = -eIO, true
		}
		if !ob.open {
			svcFree(ob)
		} else {
			ob.svc = -1 // no service: nothing more is posted
		}
	}
	services[o.pipe].used = false
	dataServiceGone(o.pipe)
	wakeAll(waitPoll)
}

// svcObjectFile is the program's side of a service object.
type svcObjectFile struct{ baseFile }

//go:nosplit
func (*svcObjectFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	ob := &svcObjects[o.pipe]
	if ob.dgram {
		return netDgramV(o, false, uint64(buf), uint64(n), 0, 0, 0)
	}
	svc := -1
	if ob.svc >= 0 {
		svc = int(o.pipe)
	}
	r := pipeReadFrom(o, &pipes[ob.rx], buf, n, svc)
	if r == 0 && n > 0 && ob.rdErr != 0 {
		// The stream ended in a reset: the read that reaches its end
		// fails with it once, as on Linux; later reads see end of file.
		r, ob.rdErr = -int64(ob.rdErr), 0
	}
	return r
}

//go:nosplit
func (*svcObjectFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	if pos >= 0 {
		return -eSPIPE
	}
	ob := &svcObjects[o.pipe]
	if ob.dgram {
		return netDgramV(o, true, uint64(buf), uint64(n), 0, 0, 0)
	}
	if ob.wrShut {
		return -ePIPE
	}
	r := pipeWriteTo(o, &pipes[ob.tx], buf, n)
	if r > 0 && ob.svc >= 0 {
		svcNotify(int(o.pipe), svcReqWrite)
	}
	return r
}

//go:nosplit
func (*svcObjectFile) ready(o *ofile) uint32 {
	ob := &svcObjects[o.pipe]
	rx, tx := &pipes[ob.rx], &pipes[ob.tx]
	r := uint32(0)
	if rx.wpos != rx.rpos {
		r |= epollIn
	}
	if rx.writers == 0 {
		r |= epollIn | epollRdhup | epollHup
	}
	if tx.readers == 0 {
		r |= epollOut | epollErr
	} else if tx.wpos-tx.rpos < pipeSize {
		r |= epollOut
	}
	return r&^ob.evOff | ob.evOn
}

//go:nosplit
func (*svcObjectFile) pollable(o *ofile) bool { return true }

//go:nosplit
func (*svcObjectFile) gen(o *ofile) (uint32, bool) {
	ob := &svcObjects[o.pipe]
	return pipes[ob.rx].gen + pipes[ob.tx].gen + ob.evGen, true
}

//go:nosplit
func (*svcObjectFile) ioctl(o *ofile, req, arg uint64) int64 {
	if req == svcAmberCall {
		if svcObjects[o.pipe].svc < 0 {
			return -ePIPE
		}
		return svcCall(o, arg)
	}
	return -eNOTTY
}

//go:nosplit
func (*svcObjectFile) stat(o *ofile, st *statT) {
	st.dev = fsDev + 3
	st.ino = uint64(o.pipe) + 1
	st.nlink = 1
	st.mode = sIFSOCK | 0o600
	st.blksize = pageSize
}

//go:nosplit
func (*svcObjectFile) release(o *ofile) {
	i := int(o.pipe)
	ob := &svcObjects[i]
	ob.open = false
	pipes[ob.tx].writers, pipes[ob.rx].readers = 0, 0
	pipeChanged(&pipes[ob.tx])
	if ob.svc >= 0 && pipes[ob.tx].readers != 0 { // not dropped (it may have ended its data)
		r := svcRequest{op: svcReqClose, handle: svcHandle(i), cookie: ob.cookie}
		svcPost(&services[ob.svc], &r) // a full queue loses the notice; svcDrop still frees
		return
	}
	svcFree(ob)
}

// A synchronous call blocks the calling thread in the core while its
// goroutine keeps the runtime's P (the runtime sees a thread in a system
// call). With GOMAXPROCS=1 the service goroutine can only run once the
// runtime's sysmon retakes that P, which it does on the second of its
// rounds that sees the same system call; between rounds sysmon sleeps
// 20 µs to 10 ms in nanosleep (runtime.usleep). sysmonKick cuts those
// sleeps short: the thread napping in a short nanosleep wakes now, and the
// next sysmonNaps short nanosleeps return at once, so the P is handed off
// within a few thread switches (docs/kernel.md, "Services", has the
// figures). Only short sleeps of nanosleep itself are cut: time.Sleep never
// uses it, and the cut is bounded, so a program's own nanosleep ends early
// at most a few times per service call.
const (
	sysmonMaxNap = 10_000_000 // ns: sysmon's longest sleep between rounds
	sysmonNaps   = 3
)

var sysmonKicks int

//go:nosplit
func sysmonKick() {
	sysmonKicks = sysmonNaps
	for i := range threads {
		t := &threads[i]
		if t.state == tBlocked && t.waitKind == waitSleep && t.napping && sysmonKicks > 0 {
			sysmonKicks--
			wake(i, wokeKick)
		}
	}
}
