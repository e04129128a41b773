package kernel

import (
	"sync/atomic"
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/drivers/uart16550"
)

const nsys = 512 // the table's size: Linux's numbers and Amber's own (500 and up)

type sysHandler func(*sysFrame) int64

// sysTable is filled in statically by the linker (top-level functions in
// a composite literal need no init code): the runtime's first system call
// arrives before any package is initialized.
var sysTable = [nsys]sysHandler{
	// Files and descriptors.
	nrRead:          sysRead,
	nrWrite:         sysWrite,
	nrOpen:          sysOpen,
	nrClose:         sysClose,
	nrStat:          sysStat,
	nrFstat:         sysFstat,
	nrLstat:         sysLstat,
	nrLseek:         sysLseek,
	nrIoctl:         sysIoctl,
	nrPread64:       sysPread64,
	nrPwrite64:      sysPwrite64,
	nrReadv:         sysReadv,
	nrWritev:        sysWritev,
	nrAccess:        sysAccess,
	nrPipe:          sysPipe,
	nrDup:           sysDup,
	nrDup2:          sysDup2,
	nrSendfile:      sysENOSYS,
	nrFcntl:         sysFcntl,
	nrFlock:         sysFdNop,
	nrFsync:         sysFsync,
	nrFdatasync:     sysFsync,
	nrTruncate:      sysTruncate,
	nrFtruncate:     sysFtruncate,
	nrGetcwd:        sysGetcwd,
	nrChdir:         sysChdir,
	nrFchdir:        sysFchdir,
	nrRename:        sysRename,
	nrMkdir:         sysMkdir,
	nrRmdir:         sysRmdir,
	nrCreat:         sysCreat,
	nrLink:          sysLink,
	nrUnlink:        sysUnlink,
	nrSymlink:       sysSymlink,
	nrReadlink:      sysReadlink,
	nrChmod:         sysChmod,
	nrFchmod:        sysFchmod,
	nrChown:         sysChown,
	nrFchown:        sysFchown,
	nrLchown:        sysLchown,
	nrUmask:         sysUmask,
	nrUtime:         sysUtime,
	nrMknod:         sysMknod,
	nrSync:          sysZero,
	nrGetdents64:    sysGetdents64,
	nrFadvise64:     sysFdNop,
	nrUtimes:        sysUtimes,
	nrOpenat:        sysOpenat,
	nrMkdirat:       sysMkdirat,
	nrMknodat:       sysMknodat,
	nrFchownat:      sysFchownat,
	nrFutimesat:     sysFutimesat,
	nrNewfstatat:    sysNewfstatat,
	nrUnlinkat:      sysUnlinkat,
	nrRenameat:      sysRenameat,
	nrLinkat:        sysLinkat,
	nrSymlinkat:     sysSymlinkat,
	nrReadlinkat:    sysReadlinkat,
	nrFchmodat:      sysFchmodat,
	nrFaccessat:     sysFaccessat,
	nrSplice:        sysSplice,
	nrUtimensat:     sysUtimensat,
	nrFallocate:     sysFallocate,
	nrDup3:          sysDup3,
	nrPipe2:         sysPipe2,
	nrPreadv:        sysPreadv,
	nrPwritev:       sysPwritev,
	nrSyncfs:        sysFdNop,
	nrRenameat2:     sysRenameat2,
	nrCopyFileRange: sysENOSYS,
	nrStatx:         sysENOSYS,
	nrOpenat2:       sysENOSYS,
	nrFaccessat2:    sysFaccessat2,
	nrFchmodat2:     sysFchmodat2,
	// Polling and events.
	nrPoll:         sysPoll,
	nrEpollCreate:  sysEpollCreate,
	nrEpollWait:    sysEpollWait,
	nrEpollCtl:     sysEpollCtl,
	nrPpoll:        sysPpoll,
	nrEpollPwait:   sysEpollPwait,
	nrEventfd:      sysEventfd,
	nrEventfd2:     sysEventfd2,
	nrEpollCreate1: sysEpollCreate1,
	nrEpollPwait2:  sysEpollPwait2,
	// Sockets.
	nrSocket:      sysSocket,
	nrConnect:     sysConnect,
	nrAccept:      sysAccept,
	nrSendto:      sysSendto,
	nrRecvfrom:    sysRecvfrom,
	nrSendmsg:     sysSendmsg,
	nrRecvmsg:     sysRecvmsg,
	nrShutdown:    sysShutdown,
	nrBind:        sysBind,
	nrListen:      sysListen,
	nrGetsockname: sysGetsockname,
	nrGetpeername: sysGetpeername,
	nrSocketpair:  sysSocketpair,
	nrSetsockopt:  sysSetsockopt,
	nrGetsockopt:  sysGetsockopt,
	nrAccept4:     sysAccept4,
	// Extended attributes.
	nrSetxattr:      sysXattrPath,
	nrLsetxattr:     sysXattrLpath,
	nrFsetxattr:     sysXattrFD,
	nrGetxattr:      sysXattrPath,
	nrLgetxattr:     sysXattrLpath,
	nrFgetxattr:     sysXattrFD,
	nrListxattr:     sysListxattr,
	nrLlistxattr:    sysLlistxattr,
	nrFlistxattr:    sysFlistxattr,
	nrRemovexattr:   sysXattrPath,
	nrLremovexattr:  sysXattrLpath,
	nrFremovexattr:  sysXattrFD,
	nrSetxattrat:    sysENOSYS,
	nrGetxattrat:    sysENOSYS,
	nrListxattrat:   sysENOSYS,
	nrRemovexattrat: sysENOSYS,
	// Memory.
	nrMmap:     sysMmap,
	nrMprotect: sysMprotect,
	nrMunmap:   sysMunmap,
	nrBrk:      sysBrk,
	nrMsync:    sysMsync,
	nrMadvise:  sysMadvise,
	// Signals.
	nrRtSigaction:   sysRtSigaction,
	nrRtSigprocmask: sysRtSigprocmask,
	nrRtSigreturn:   sysRtSigreturn,
	nrKill:          sysKill,
	nrSigaltstack:   sysSigaltstack,
	nrTkill:         sysTkill,
	nrTgkill:        sysTgkill,
	// Threads and scheduling.
	nrSchedYield:       sysSchedYield,
	nrGetpid:           sysGetpid,
	nrClone:            sysClone,
	nrExit:             sysExit,
	nrWait4:            sysWait4,
	nrGetppid:          sysGetppid,
	nrPrctl:            sysPrctl,
	nrArchPrctl:        sysArchPrctl,
	nrGettid:           sysGettid,
	nrFutex:            sysFutex,
	nrSchedGetaffinity: sysSchedGetaffinity,
	nrSetTidAddress:    sysSetTidAddress,
	nrExitGroup:        sysExitGroup,
	// Time.
	nrNanosleep:      sysNanosleep,
	nrGettimeofday:   sysGettimeofday,
	nrTime:           sysTime,
	nrClockGettime:   sysClockGettime,
	nrClockGetres:    sysClockGetres,
	nrClockNanosleep: sysClockNanosleep,
	// Identity, limits and randomness.
	nrUname:     sysUname,
	nrGetuid:    sysZero,
	nrGetgid:    sysZero,
	nrGeteuid:   sysZero,
	nrGetegid:   sysZero,
	nrGetgroups: sysZero,
	nrPrlimit64: sysPrlimit64,
	nrGetrandom: sysGetrandom,
	// Processes: there is one (pidfds answer as on a kernel before 5.3).
	nrPidfdSendSignal: sysENOSYS,
	nrPidfdOpen:       sysENOSYS,
	nrPidfdGetfd:      sysENOSYS,
	// Amber's own.
	nrAmberMark:      sysAmberMark,
	nrAmberLoadFiles: sysAmberLoadFiles,
	// Tests reach the exception table through it (uaccess.go).
	nrAmberUaccessProbe: sysAmberUaccessProbe,
	nrAmberService:      sysAmberService,
	nrAmberSnapshot:     sysAmberSnapshot,
	// Guest tests wait for device interrupts through it (irq.go).
	boot.SysAmberIRQCount: sysAmberIRQCount,
}

// reported remembers which unimplemented calls were already named.
var reported [nsys]bool

// dispatch serves the system call in f and leaves the result in f.rax.
// Called from entry_amd64.s on the thread's kernel stack.
//
//go:nosplit
func dispatch(f *sysFrame) {
	nr := f.rax
	if nr < nsys {
		if h := sysTable[nr]; h != nil {
			f.rax = uint64(h(f))
			if sigWork != 0 {
				syscallExitWork(f)
			}
			return
		}
		if !reported[nr] {
			reported[nr] = true
			kprint("amber: unimplemented system call ")
			if nr < uint64(len(sysNames)) && sysNames[nr] != "" {
				kprint(sysNames[nr])
			} else {
				kprintInt(int64(nr))
			}
			kprint(" (ENOSYS)\n")
		}
	}
	f.rax = ^uint64(eNOSYS - 1)
}

//go:nosplit
func sysZero(f *sysFrame) int64 { return 0 }

const (
	archSetFS = 0x1002
	archGetFS = 0x1003
)

//go:nosplit
func sysArchPrctl(f *sysFrame) int64 {
	switch f.rdi {
	case archSetFS:
		if r := fsBaseOK(uintptr(f.rsi)); r < 0 {
			return r
		}
		cur().fsbase = uintptr(f.rsi)
		wrfsbase(uintptr(f.rsi))
		return 0
	case archGetFS:
		fs := uint64(cur().fsbase)
		if !copyOut(uintptr(f.rsi), unsafe.Pointer(&fs), 8) {
			return -eFAULT
		}
		return 0
	}
	return -eINVAL
}

//go:nosplit
func sysPrctl(f *sysFrame) int64 { return -eINVAL }

//go:nosplit
func sysWait4(f *sysFrame) int64 { return -eCHILD }

// utsBuf holds the struct utsname uname copies out.
var utsBuf [6 * 65]byte

// uname: Linux-compatible answers; programs parse the release.
//
//go:nosplit
func sysUname(f *sysFrame) int64 {
	clear(utsBuf[:])
	fields := [...]string{"Linux", "amber", "6.1.0-amber", "#1 SMP Amber", "x86_64", "(none)"}
	for i, s := range fields {
		copy(utsBuf[i*65:i*65+64], s)
	}
	if !copyOut(uintptr(f.rdi), unsafe.Pointer(&utsBuf[0]), uintptr(len(utsBuf))) {
		return -eFAULT
	}
	return 0
}

type rlimit struct{ cur, max uint64 }

const (
	rlimitStack  = 3
	rlimitNofile = 7
	rlimInfinity = ^uint64(0)
)

var rlimits [16]rlimit

//go:nosplit
func sysPrlimit64(f *sysFrame) int64 {
	pid, res, newp, oldp := f.rdi, f.rsi, uintptr(f.rdx), uintptr(f.r10)
	if pid != 0 && pid != 1 {
		return -eSRCH
	}
	if res >= uint64(len(rlimits)) {
		return -eINVAL
	}
	l := &rlimits[res]
	if l.cur == 0 && l.max == 0 {
		switch res {
		case rlimitNofile:
			l.cur, l.max = maxFiles, maxFiles
		case rlimitStack:
			l.cur, l.max = 8<<20, rlimInfinity
		default:
			l.cur, l.max = rlimInfinity, rlimInfinity
		}
	}
	// As on Linux: the new limit is read first, the old one written last
	// (after the change).
	var n rlimit
	if newp != 0 {
		if !copyIn(unsafe.Pointer(&n), newp, unsafe.Sizeof(n)) {
			return -eFAULT
		}
		if n.cur > n.max {
			return -eINVAL
		}
	}
	old := *l
	if newp != 0 {
		*l = n
	}
	if oldp != 0 && !copyOut(oldp, unsafe.Pointer(&old), unsafe.Sizeof(old)) {
		return -eFAULT
	}
	return 0
}

//go:nosplit
func randomU64() uint64 {
	if haveRDRAND {
		for i := 0; i < 16; i++ {
			if v, ok := rdrand(); ok {
				return v
			}
		}
	}
	// splitmix64 over the VMM's seed and the TSC. A VM restored from a
	// snapshot has the seed of every other VM restored from it, until it
	// takes the fresh one the VMM wrote.
	if amberInfo != 0 {
		ai := (*boot.AmberInfo)(ptr(amberInfo))
		if r := atomic.LoadUint64(&ai.Restores); r != seedRestores {
			seedRestores = r
			seed = ai.Seed
		}
	}
	seed[0] += 0x9e3779b97f4a7c15 ^ rdtsc()
	z := seed[0] ^ seed[1]
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// randBuf holds random bytes on their way to the program.
var randBuf [32]uint64

// fillRandom fills up to n bytes at the program's buf with random bytes,
// stopping where buf stops being the program's memory: the count filled.
//
//go:nosplit
func fillRandom(buf, n uintptr) uintptr {
	done := uintptr(0)
	for done < n {
		for i := range randBuf {
			randBuf[i] = randomU64()
		}
		k := n - done
		if k > unsafe.Sizeof(randBuf) {
			k = unsafe.Sizeof(randBuf)
		}
		c := copyOutSome(buf+done, unsafe.Pointer(&randBuf), k)
		done += c
		if c < k {
			break
		}
	}
	return done
}

// getrandom: like Linux, a request is capped at maxRW and a buffer that
// stops being the program's memory gives a short count (EFAULT when not
// a byte could be stored).
//
//go:nosplit
func sysGetrandom(f *sysFrame) int64 {
	const grndNonblock, grndRandom, grndInsecure = 1, 2, 4
	flags := f.rdx
	if flags&^(grndNonblock|grndRandom|grndInsecure) != 0 || flags&(grndRandom|grndInsecure) == grndRandom|grndInsecure {
		return -eINVAL
	}
	n := uintptr(f.rsi)
	if n > maxRW {
		n = maxRW
	}
	return userCount(fillRandom(uintptr(f.rdi), n), n)
}

// idleWait asks the VMM to wait until the deadline (ns since boot, 0 for
// none) or input, after polling a while (idlepoll.go); under other VMMs
// it spins on the clock and the UART.
//
//go:nosplit
func idleWait(deadline int64, seen uint64) int {
	if pvHypercalls {
		if idlePollNs > 0 && idlePoll(deadline, seen) {
			return 0
		}
		return int(hcall(boot.HCIdle, uint64(deadline), 0, 0))
	}
	for deadline == 0 || nanotime() < deadline {
		if irqWakes != seen {
			return 0
		}
		if uart16550.Ready(uart16550.COM1) {
			return idleInput
		}
		if netMoved() {
			return 0 // schedule's netWake wakes the pollers
		}
	}
	return 0
}

const idleInput = boot.IdleInput

var _ = unsafe.Pointer(nil)
