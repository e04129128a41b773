package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// The persistent file system's core side (docs/kernel.md, "Persistent
// files"). Files under the mount point (/data unless amber.data= says
// otherwise) live in objstore on the virtio-blk disk, served by a service
// goroutine (package kernel/datafs). The core resolves a path as far as
// the mount point (walk answers walkData and leaves the rest of the path
// in lkData*), then makes a synchronous call: it fills dataArgs, posts a
// request on the service's queue and blocks until the service answers.
// The service reads and writes dataArgs and the program's buffers
// directly (one address space); the core has checked the buffers first,
// so the service never faults.
//
// One call is in flight at a time (dataBusy): dataArgs and the path
// buffers are static, and the service is one goroutine anyway. A call is
// not interrupted by signals (Linux's uninterruptible disk sleep): the
// service may already have done what was asked, so EINTR would lie.

const (
	devDataMount = 2 // inode.rdev of the mount point (a directory)

	// walkData is walk's answer for a path on the persistent file
	// system; inoData is inodeAt's and inodeOfFD's. Both mean: the call
	// is prepared in dataArgs and the data lock is held, finish with
	// dataRun. Neither is an errno a program could be handed by
	// mistake that would mean something.
	walkData = -0x10000
	inoData  = 1 << 40

	svcReqData      = 5  // a call on /data: dataArgs holds it; answer with svcDataDone
	svcReqDataClose = 6  // the program closed node args[0]
	svcDataMount    = 6  // amber_service op: (queue fd) -> address of dataArgs
	svcDataDone     = 7  // amber_service op: (queue fd, seq, result)
	svcReqDataSync  = 8  // commit /data, then svcDataSynced: a host signal waits for it
	svcDataSynced   = 12 // amber_service op: (queue fd, seq) -> 0: the commit is done

	dataMountMax = 255
)

// Operations of a call (dataArgsT.op); kernel/datafs has the same list.
const (
	dOpen     = iota + 1 // path, flags, mode -> node; mode = the file's type
	dStat                // path (flags: AT_SYMLINK_NOFOLLOW) or node -> st
	dMkdir               // path, mode
	dUnlink              // path, flags (AT_REMOVEDIR)
	dRename              // path, path2 (node2), flags (RENAME_NOREPLACE)
	dChmod               // path or node, mode
	dUtimes              // path or node, atime (a), mtime (m); utimeOmit keeps one
	dTruncate            // path or node, size (off)
	dAccess              // path, mode
	dChdir               // path or node -> node of the directory
	dRead                // node, off, buf, n -> bytes
	dWrite               // node, off (-1: at the end), buf, n -> bytes; off = the end of the write
	dGetdents            // node, off (position), buf, n -> bytes; off = the next position
	dSync                // node: commit (fsync, fdatasync, syncfs)
	dGetcwd              // node -> the path's length, the path in path
	dReadlink            // path -> EINVAL (no symlinks) or an error
	dStatfs              // -> st.blocks = total blocks, st.size = free blocks, st.blksize
	dSymlink             // path (the link), path2 (the target)
)

// dataArgsT is one call; the layout is kernel/datafs's callArgs.
type dataArgsT struct {
	op    uint32
	flags uint32
	node  uint64 // the node called, or the base of path (0: the root)
	node2 uint64 // the base of path2
	off   int64
	buf   uintptr
	n     uint64
	mode  uint32
	plen  uint32
	plen2 uint32
	// follow: a symlink in the last component is followed (walk's
	// wFollow); in the others always.
	follow uint32
	a, m   int64
	st     statT
	path   [maxPathLen + 1]byte
	path2  [maxPathLen + 1]byte
}

// kernel/datafs's callArgs checks the same figures: the two declarations
// must agree field for field.
var (
	_ [unsafe.Offsetof(dataArgsT{}.st) - 80]byte
	_ [80 - unsafe.Offsetof(dataArgsT{}.st)]byte
	_ [unsafe.Offsetof(dataArgsT{}.path2) - 4321]byte
	_ [4321 - unsafe.Offsetof(dataArgsT{}.path2)]byte
	_ [unsafe.Sizeof(dataArgsT{}) - 8424]byte
	_ [8424 - unsafe.Sizeof(dataArgsT{})]byte
)

var (
	dataArgs   dataArgsT
	dataSvc    int32 = -1 // the service serving /data
	dataBusy   bool
	dataSeq    uint64
	dataDone   bool
	dataRes    int64
	dataWarned bool

	lkDataBase uint64 // walkData: the base node (0: the root of /data)
	lkDataPath uintptr
	lkDataLen  uintptr

	cwdData uint64 // the working directory's node when it is on /data

	dataMount    [dataMountMax + 1]byte // the mount point, "/data" by default
	dataMountLen uintptr
)

// dataConfig takes the mount point from the command line (amber.data=
// PATH; amber.data=off for none). kinit calls it.
//
//go:nosplit
func dataConfig(si *boot.StartInfo) {
	d := "/data"
	v := cmdlineValue(si, "amber.data=")
	if v != nil {
		if len(v) == 3 && v[0] == 'o' && v[1] == 'f' && v[2] == 'f' {
			return
		}
		if len(v) < 2 || v[0] != '/' || len(v) > dataMountMax {
			kprint("amber: amber.data= wants an absolute path (or off); using /data\n")
		} else {
			dataMountLen = uintptr(copy(dataMount[:], v))
			return
		}
	}
	dataMountLen = uintptr(copy(dataMount[:], d))
}

// dataMkMount makes the mount point's directories in the in-memory
// file system (fsInit calls it when there is a disk).
//
//go:nosplit
func dataMkMount() {
	cur := rootIno
	i := uintptr(0)
	base := uintptr(unsafe.Pointer(&dataMount[0]))
	for i < dataMountLen {
		for i < dataMountLen && dataMount[i] == '/' {
			i++
		}
		s := i
		for i < dataMountLen && dataMount[i] != '/' {
			i++
		}
		if i == s {
			break
		}
		next := uint32(0)
		if sl := dirSlot(cur, base+s, i-s); sl >= 0 {
			next = slotAt(ip(cur), uintptr(sl), false).ino
		}
		if next == 0 {
			next = ialloc(sIFDIR | 0o755)
			n := ip(next)
			n.nlink = 2
			n.parent = cur
			dirAdd(cur, base+s, i-s, next)
			ip(cur).nlink++
		}
		if !isDir(next) {
			kprint("amber: the mount point of the persistent file system is not a directory\n")
			return
		}
		cur = next
	}
	if cur != rootIno {
		ip(cur).rdev = devDataMount
	}
}

// isDataMount reports whether inode i is the mount point.
//
//go:nosplit
func isDataMount(i uint32) bool { return ip(i).rdev == devDataMount && isDir(i) }

// walkToData ends a walk that reached /data: the rest of the path, from
// byte s of pathBuf, is the service's to resolve from node base.
//
//go:nosplit
func walkToData(base uint64, s uintptr) int64 {
	lkDataBase = base
	lkDataPath = uintptr(unsafe.Pointer(&pathBuf[0])) + s
	lkDataLen = pathLen - s
	lkIno, lkParent, lkNameLen = 0, 0, 0
	return walkData
}

// dataLock takes the call slot; true when it had to wait (the caller's
// walk may then be stale).
//
//go:nosplit
func dataLock() bool {
	waited := false
	for dataBusy {
		waited = true
		block(waitPoll, 0, 0)
	}
	dataBusy = true
	return waited
}

//go:nosplit
func dataUnlock() {
	dataBusy = false
	wakeAll(waitPoll)
}

// dataAvailable reports whether a service serves /data, saying once on
// the console when none does.
//
//go:nosplit
func dataAvailable() bool {
	if dataSvc >= 0 {
		return true
	}
	if !dataWarned {
		dataWarned = true
		kprint("amber: the persistent file system is not mounted (no service: the image lacks kernel/datafs/mount, or the disk was refused): ENODEV\n")
	}
	return false
}

// dataWalk is walk for the calls that serve /data: on walkData it holds
// the data lock and dataArgs has the path (path, plen, node).
//
//go:nosplit
func dataWalk(dirfd int64, path uintptr, flags int) int64 {
	r := walk(dirfd, path, flags)
	if r != walkData {
		return r
	}
	if !dataAvailable() {
		return -eNODEV
	}
	if dataLock() {
		// Another call ran meanwhile and may have reused pathBuf.
		if r = walk(dirfd, path, flags); r != walkData {
			dataUnlock()
			return r
		}
	}
	dataPrep()
	if flags&wFollow != 0 {
		dataArgs.follow = 1
	}
	return walkData
}

// dataPrep starts a call on the path walk left (the lock is held).
//
//go:nosplit
func dataPrep() {
	a := &dataArgs
	a.op, a.flags, a.node2, a.off, a.buf, a.n, a.mode, a.plen2, a.follow, a.a, a.m = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
	a.node = lkDataBase
	a.plen = uint32(copy(a.path[:maxPathLen], userBytes(lkDataPath, lkDataLen)))
}

// dataNode starts a call on open node o (an fdData description): false,
// with nothing held, when there is no service.
//
//go:nosplit
func dataNode(node uint64) bool {
	if !dataAvailable() {
		return false
	}
	dataLock()
	a := &dataArgs
	a.op, a.flags, a.node2, a.off, a.buf, a.n, a.mode, a.plen, a.plen2, a.follow, a.a, a.m = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
	a.node = node
	return true
}

// dataRun makes the call prepared in dataArgs, waits for the answer and
// releases the lock.
//
//go:nosplit
func dataRun(op uint32) int64 {
	r := dataCall(op)
	dataUnlock()
	return r
}

// dataCall makes the call without releasing the lock (the caller reads
// dataArgs' results first, then calls dataUnlock).
//
//go:nosplit
func dataCall(op uint32) int64 {
	if dataSvc < 0 || !services[dataSvc].used {
		return -eNODEV
	}
	dataArgs.op = op
	dataSeq++
	req := svcRequest{op: svcReqData, seq: dataSeq}
	for !svcPost(&services[dataSvc], &req) {
		block(waitPoll, 0, 0) // the queue is full: the service is draining it
		if dataSvc < 0 {
			return -eNODEV
		}
	}
	dataDone = false
	sysmonKick()
	for !dataDone {
		block(waitPoll, 0, 0) // signals do not interrupt: see the file comment
	}
	return dataRes
}

// dataClosed tells the service a node is no longer used (no answer).
//
//go:nosplit
func dataClosed(node uint64) {
	if dataSvc < 0 || node == 0 {
		return
	}
	r := svcRequest{op: svcReqDataClose}
	r.args[0] = node
	svcPost(&services[dataSvc], &r) // a full queue leaks the node until the service restarts
}

// dataService serves amber_service's svcDataMount and svcDataDone.
//
//go:nosplit
func dataService(op uint64, q int32, seq uint64, res int64) int64 {
	if op == svcDataMount {
		if dataSvc >= 0 && services[dataSvc].used {
			return -eBUSY
		}
		if dataMountLen == 0 || !vdaOn {
			return -eNODEV
		}
		dataSvc = q
		vdaClaimed = true
		// The mount point, for symlinks on /data whose target is absolute.
		dataArgs.plen = uint32(copy(dataArgs.path[:], dataMount[:dataMountLen]))
		return int64(uintptr(unsafe.Pointer(&dataArgs)))
	}
	if op == svcDataSynced {
		if q != dataSvc || seq != dataSyncSeq {
			return -eINVAL // a late answer to a wait that timed out
		}
		deliverHostSignals(dataSyncEnd())
		return 0
	}
	if q != dataSvc || seq != dataSeq || dataDone {
		return -eINVAL
	}
	dataRes, dataDone = res, true
	wakeAll(waitPoll)
	return 0
}

// dataServiceGone fails the call in flight when the service's queue is
// closed.
//
//go:nosplit
func dataServiceGone(q int32) {
	if q != dataSvc {
		return
	}
	dataSvc = -1
	vdaClaimed = false
	if !dataDone {
		dataRes, dataDone = -eIO, true
	}
	deliverHostSignals(dataSyncEnd())
}

// Signals from the host (Ctrl-C's SIGINT, a SIGTERM) usually end the
// program: Go's handler kills the process unless it asked for them. That
// is a power-off of the VM, and with the runtime's only P held by the
// dying thread the service could not commit then. So a host signal whose
// default action ends the program is held while the service commits
// /data (svcReqDataSync), and delivered when it answers (svcDataSynced)
// or after dataSyncWait: everything written before the signal survives
// it, as on Linux. A program that handles the signal gets it a commit
// later. Without /data nothing is held.
const dataSyncWait = 30_000_000_000 // ns

var (
	dataSyncing   bool
	dataSigsHeld  uint64 // host signals waiting for the commit (bit sig-1)
	dataSyncUntil int64
	dataSyncSeq   uint64
)

// dataHoldSignals takes the host signals just posted and returns those
// to deliver now; the others wait for the commit.
//
//go:nosplit
func dataHoldSignals(bits uint64) uint64 {
	if dataSyncing {
		dataSigsHeld |= bits
		if nanotime() < dataSyncUntil {
			return 0
		}
		kprint("amber: /data: the commit before a signal from the host did not finish in 30 s; delivering the signal without it\n")
		return dataSyncEnd()
	}
	ends := false
	for sig := uint64(1); sig < nsig; sig++ {
		if bits&(1<<(sig-1)) != 0 && defaultTerminates(sig) {
			ends = true
		}
	}
	q := int(dataSvc)
	if !ends || q < 0 || q >= len(services) || !services[q].used {
		return bits
	}
	dataSyncSeq++
	r := svcRequest{op: svcReqDataSync, seq: dataSyncSeq}
	if !svcPost(&services[q], &r) {
		return bits
	}
	dataSyncing, dataSigsHeld, dataSyncUntil = true, bits, nanotime()+dataSyncWait
	return 0
}

// dataSyncEnd ends the wait: the signals held.
//
//go:nosplit
func dataSyncEnd() uint64 {
	b := dataSigsHeld
	dataSyncing, dataSigsHeld = false, 0
	return b
}

// vdaClaimed: /dev/vda belongs to the persistent file system; the
// program's own opens of it fail with EBUSY.
var vdaClaimed bool

// Path calls on /data, called by the file system's calls on walkData
// or inoData (the lock held, dataArgs prepared).

//go:nosplit
func dataOpen(flags uint64, mode uint32) int64 {
	dataArgs.flags = uint32(flags)
	dataArgs.mode = mode &^ umaskBits
	r := dataCall(dOpen)
	if r < 0 {
		dataUnlock()
		return r
	}
	node := uint64(r)
	dataUnlock()
	fd := allocFD(fdData, flags)
	if fd < 0 {
		dataClosed(node)
		return fd
	}
	ofiles[fds[fd].of-1].count = node
	return fd
}

// dataStat runs a stat call into statBuf.
//
//go:nosplit
func dataStat(flags uint64) int64 {
	dataArgs.flags = uint32(flags)
	r := dataCall(dStat)
	if r >= 0 {
		statBuf = dataArgs.st
	}
	dataUnlock()
	return r
}

//go:nosplit
func dataGetcwd(buf, size uintptr) int64 {
	if !dataNode(cwdData) {
		return -eNODEV
	}
	r := dataCall(dGetcwd)
	if r < 0 {
		dataUnlock()
		return r
	}
	// The mount point, then "/" and the path when it is not the root.
	n := uintptr(r)
	need := dataMountLen + 1
	if n > 0 {
		need += n + 1
	}
	if size < need {
		dataUnlock()
		return -eRANGE
	}
	ok := copyOut(buf, unsafe.Pointer(&dataMount[0]), dataMountLen)
	w := dataMountLen
	if n > 0 {
		slash := byte('/')
		ok = ok && copyOut(buf+w, unsafe.Pointer(&slash), 1) && copyOut(buf+w+1, unsafe.Pointer(&dataArgs.path[0]), n)
		w += 1 + n
	}
	nul := byte(0)
	ok = ok && copyOut(buf+w, unsafe.Pointer(&nul), 1)
	dataUnlock()
	if !ok {
		return -eFAULT
	}
	return int64(need)
}

// dataChdir makes the prepared directory the working directory.
//
//go:nosplit
func dataChdir() int64 {
	r := dataRun(dChdir)
	if r < 0 {
		return r
	}
	old := cwdData
	cwdData = uint64(r)
	dataClosed(old)
	return 0
}

// The open file kind.

type dataFile struct{ baseFile }

//go:nosplit
func (*dataFile) read(o *ofile, buf, n uintptr, pos int64) int64 {
	return dataRW(o, buf, n, pos, false)
}

//go:nosplit
func (*dataFile) write(o *ofile, buf, n uintptr, pos int64) int64 {
	return dataRW(o, buf, n, pos, true)
}

//go:nosplit
func dataRW(o *ofile, buf, n uintptr, pos int64, write bool) int64 {
	if n == 0 {
		return 0
	}
	k := userPrefix(buf, n)
	if k == 0 {
		return -eFAULT
	}
	o.refs++ // a close meanwhile must not free the description
	if !dataNode(o.count) {
		putOFD(o)
		return -eNODEV
	}
	a := &dataArgs
	a.buf, a.n = buf, uint64(k)
	a.off = pos
	if pos < 0 {
		a.off = o.off
	}
	op := uint32(dRead)
	if write {
		op = dWrite
		if o.flags&oAppend != 0 && pos < 0 {
			a.off = -1
		}
	}
	r := dataCall(op)
	if r > 0 && pos < 0 {
		if write {
			o.off = a.off
		} else {
			o.off += r
		}
	}
	dataUnlock()
	putOFD(o)
	return r
}

//go:nosplit
func (*dataFile) stat(o *ofile, st *statT) {
	if !dataNode(o.count) {
		return
	}
	if dataCall(dStat) >= 0 {
		*st = dataArgs.st
	}
	dataUnlock()
}

//go:nosplit
func (*dataFile) seek(o *ofile, off int64, whence uint64) int64 {
	var base int64
	switch whence {
	case 0:
	case 1:
		base = o.off
	case 2:
		if !dataNode(o.count) {
			return -eNODEV
		}
		r := dataCall(dStat)
		base = dataArgs.st.size
		dataUnlock()
		if r < 0 {
			return r
		}
	default:
		return -eINVAL
	}
	if base+off < 0 {
		return -eINVAL
	}
	o.off = base + off
	return o.off
}

//go:nosplit
func (*dataFile) release(o *ofile) { dataClosed(o.count) }

// dataFD prepares a call on descriptor o's node.
//
//go:nosplit
func dataFD(o *ofile) int64 {
	if !dataNode(o.count) {
		return -eNODEV
	}
	return inoData
}

//go:nosplit
func dataGetdents(o *ofile, buf, count uintptr) int64 {
	k := userPrefix(buf, count)
	if k == 0 {
		return -eFAULT
	}
	o.refs++
	if !dataNode(o.count) {
		putOFD(o)
		return -eNODEV
	}
	dataArgs.buf, dataArgs.n, dataArgs.off = buf, uint64(k), o.off
	r := dataCall(dGetdents)
	if r >= 0 {
		o.off = dataArgs.off
	}
	dataUnlock()
	putOFD(o)
	return r
}

//go:nosplit
func dataFsync(o *ofile) int64 {
	if !dataNode(o.count) {
		return -eNODEV
	}
	return dataRun(dSync)
}

// dataSymlink makes the prepared path a symlink to the target in
// targetBuf (tl bytes).
//
//go:nosplit
func dataSymlink(tl uintptr) int64 {
	dataArgs.plen2 = uint32(copy(dataArgs.path2[:maxPathLen], targetBuf[:tl]))
	return dataRun(dSymlink)
}

// dataReadlink reads the prepared path's target into the program's buf.
//
//go:nosplit
func dataReadlink(buf uintptr, size int64) int64 {
	k := userPrefix(buf, uintptr(size))
	if k == 0 {
		dataUnlock()
		return -eFAULT
	}
	dataArgs.buf, dataArgs.n = buf, uint64(k)
	return dataRun(dReadlink)
}

// dataRename finishes a rename whose old path is on /data (prepared in
// dataArgs, the lock held): the new path must be on /data too.
//
//go:nosplit
func dataRename(nfd int64, np uintptr, flags uint64) int64 {
	if flags&^renameNoreplace != 0 {
		dataUnlock()
		return -eINVAL
	}
	r := walk(nfd, np, 0)
	if r != walkData {
		dataUnlock()
		if r < 0 {
			return r
		}
		return -eXDEV
	}
	a := &dataArgs
	a.node2 = lkDataBase
	a.plen2 = uint32(copy(a.path2[:maxPathLen], userBytes(lkDataPath, lkDataLen)))
	a.flags = uint32(flags)
	return dataRun(dRename)
}

// mmapData maps a file on /data (descriptor f.r8, offset f.r9): an
// anonymous mapping filled by one read of the file, so a private copy.
// A shared writable mapping is ENODEV (nothing would write it back), as
// is a mapping of any other file: the kernel maps no file but these yet.
// Pages past the end of the file read as zeros (Linux: SIGBUS).
//
//go:nosplit
func mmapData(f *sysFrame) int64 {
	o := getFile(f.r8)
	if o == nil {
		return -eBADF
	}
	if o.kind != fdData {
		return -eNODEV
	}
	if f.r9&(pageSize-1) != 0 || f.rsi == 0 {
		return -eINVAL
	}
	if o.flags&oAccmode == oWronly || o.flags&oPath != 0 {
		return -eACCES
	}
	if f.r10&mapShared != 0 && f.rdx&protWrite != 0 {
		if o.flags&oAccmode != oRdwr {
			return -eACCES // as Linux
		}
		return -eNODEV
	}
	off := int64(f.r9)
	f.r10 = f.r10&^mapShared | mapPrivate | mapAnonymous
	addr := mmapAnon(f)
	if addr < 0 {
		return addr
	}
	n := userPrefix(uintptr(addr), uintptr(f.rsi)) // fills the pages of a lazy mapping
	o.refs++
	if !dataNode(o.count) {
		putOFD(o)
		return -eNODEV
	}
	dataArgs.buf, dataArgs.n, dataArgs.off = uintptr(addr), uint64(n), off
	r := dataCall(dRead)
	dataUnlock()
	putOFD(o)
	if r == -eISDIR {
		return -eNODEV // the range stays reserved
	}
	if r < 0 {
		return r
	}
	return addr
}
