package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/drivers/uart16550"
)

// System-call numbers served here (x86-64 Linux).
const (
	sysRead            = 0
	sysWrite           = 1
	sysOpen            = 2
	sysClose           = 3
	sysStat            = 4
	sysFstat           = 5
	sysLstat           = 6
	sysLseek           = 8
	sysMmapNr          = 9
	sysMprotectNr      = 10
	sysMunmapNr        = 11
	sysBrkNr           = 12
	sysRtSigaction     = 13
	sysRtSigprocmask   = 14
	sysRtSigreturn     = 15
	sysIoctl           = 16
	sysPread64         = 17
	sysPwrite64        = 18
	sysReadv           = 19
	sysWritev          = 20
	sysAccess          = 21
	sysSchedYieldNr    = 24
	sysMadviseNr       = 28
	sysMsyncNr         = 26
	sysNanosleepNr     = 35
	sysGetpidNr        = 39
	sysCloneNr         = 56
	sysExitNr          = 60
	sysWait4           = 61
	sysKill            = 62
	sysUname           = 63
	sysFcntl           = 72
	sysGetcwd          = 79
	sysReadlink        = 89
	sysGettimeofdayNr  = 96
	sysGetuid          = 102
	sysGetgid          = 104
	sysGeteuid         = 107
	sysGetegid         = 108
	sysGetppidNr       = 110
	sysSigaltstack     = 131
	sysPrctl           = 157
	sysArchPrctl       = 158
	sysGettidNr        = 186
	sysTkill           = 200
	sysTimeNr          = 201
	sysFutexNr         = 202
	sysSchedGetaffNr   = 204
	sysEpollCreate     = 213
	sysSetTidAddrNr    = 218
	sysClockGettimeNr  = 228
	sysClockGetresNr   = 229
	sysClockNanosleepN = 230
	sysExitGroupNr     = 231
	sysEpollWait       = 232
	sysEpollCtl        = 233
	sysTgkill          = 234
	sysOpenat          = 257
	sysNewfstatat      = 262
	sysReadlinkat      = 267
	sysFaccessat       = 269
	sysEpollPwait      = 281
	sysEventfd2        = 290
	sysEpollCreate1    = 291
	sysPrlimit64       = 302
	sysGetrandom       = 318
	sysRseq            = 334
	sysFaccessat2      = 439
	sysEpollPwait2     = 441
	// The file system (kernel/fs*.go, pipe.go, cpio.go).
	sysPwrite64Nr    = 18
	sysPipe          = 22
	sysDup           = 32
	sysDup2          = 33
	sysSendfile      = 40
	sysFlock         = 73
	sysFsync         = 74
	sysFdatasync     = 75
	sysTruncate      = 76
	sysFtruncate     = 77
	sysChdir         = 80
	sysFchdir        = 81
	sysRename        = 82
	sysMkdir         = 83
	sysRmdir         = 84
	sysCreat         = 85
	sysLink          = 86
	sysUnlink        = 87
	sysSymlink       = 88
	sysChmod         = 90
	sysFchmod        = 91
	sysChown         = 92
	sysFchown        = 93
	sysLchown        = 94
	sysUmask         = 95
	sysUtime         = 132
	sysSync          = 162
	sysGetdents64    = 217
	sysFadvise64     = 221
	sysUtimes        = 235
	sysMkdirat       = 258
	sysFchownat      = 260
	sysFutimesat     = 261
	sysUnlinkat      = 263
	sysRenameat      = 264
	sysLinkat        = 265
	sysSymlinkat     = 266
	sysFchmodat      = 268
	sysSplice        = 275
	sysUtimensat     = 280
	sysEventfd       = 284
	sysFallocate     = 285
	sysDup3          = 292
	sysPipe2         = 293
	sysPreadv        = 295
	sysPwritev       = 296
	sysSyncfs        = 306
	sysRenameat2     = 316
	sysCopyFileRange = 326
	sysStatx         = 332
	sysOpenat2       = 437
	sysFchmodat2     = 452
	sysMknod         = 133
	sysMknodat       = 259
	sysGetgroups     = 115
	// Sockets (kernel/socket.go).
	sysSocket      = 41
	sysConnect     = 42
	sysAccept      = 43
	sysSendto      = 44
	sysRecvfrom    = 45
	sysSendmsg     = 46
	sysRecvmsg     = 47
	sysShutdown    = 48
	sysBind        = 49
	sysListen      = 50
	sysGetsockname = 51
	sysGetpeername = 52
	sysSocketpair  = 53
	sysSetsockopt  = 54
	sysGetsockopt  = 55
	sysAccept4     = 288
	// Extended attributes (kernel/xattr.go).
	sysSetxattr     = 188
	sysLsetxattr    = 189
	sysFsetxattr    = 190
	sysGetxattr     = 191
	sysLgetxattr    = 192
	sysFgetxattr    = 193
	sysListxattr    = 194
	sysLlistxattr   = 195
	sysFlistxattr   = 196
	sysRemovexattr  = 197
	sysLremovexattr = 198
	sysFremovexattr = 199
	sysSetxattrat   = 463
	sysGetxattrat   = 464
	sysListxattrat  = 465
	sysRemovexattrt = 466
	// Processes: there is one; pidfds, like on a kernel before 5.3.
	sysPidfdSendSignal = 424
	sysPidfdOpen       = 434
	sysPidfdGetfd      = 438
	nsys               = 512
	sysAmberMarkNr     = 500 // Amber's own: kernel.Mark
	sysPollNr          = 7
	sysPpollNr         = 271
)

type sysHandler func(*sysFrame) int64

// sysTable is filled in statically by the linker (top-level functions in
// a composite literal need no init code): the runtime's first system call
// arrives before any package is initialized.
var sysTable = [nsys]sysHandler{
	sysRead:            sysReadFn,
	sysWrite:           sysWriteFn,
	sysOpen:            sysOpenFn,
	sysClose:           sysCloseFn,
	sysStat:            sysStatFn,
	sysFstat:           sysFstatFn,
	sysLstat:           sysLstatFn,
	sysLseek:           sysLseekFn,
	sysMmapNr:          sysMmap,
	sysMprotectNr:      sysMprotect,
	sysMunmapNr:        sysMunmap,
	sysMsyncNr:         sysMsync,
	sysBrkNr:           sysBrk,
	sysRtSigaction:     sysRtSigactionFn,
	sysRtSigprocmask:   sysRtSigprocmaskFn,
	sysRtSigreturn:     sysRtSigreturnFn,
	sysIoctl:           sysIoctlFn,
	sysPread64:         sysPreadFn,
	sysReadv:           sysReadvFn,
	sysWritev:          sysWritevFn,
	sysAccess:          sysAccessFn,
	sysSchedYieldNr:    sysSchedYield,
	sysMadviseNr:       sysMadvise,
	sysNanosleepNr:     sysNanosleep,
	sysGetpidNr:        sysGetpid,
	sysCloneNr:         sysClone,
	sysExitNr:          sysExit,
	sysWait4:           sysWait4Fn,
	sysKill:            sysKillFn,
	sysUname:           sysUnameFn,
	sysFcntl:           sysFcntlFn,
	sysGetcwd:          sysGetcwdFn,
	sysReadlink:        sysReadlinkFn,
	sysGettimeofdayNr:  sysGettimeofday,
	sysGetuid:          sysZero,
	sysGetgid:          sysZero,
	sysGeteuid:         sysZero,
	sysGetegid:         sysZero,
	sysGetppidNr:       sysGetppid,
	sysSigaltstack:     sysSigaltstackFn,
	sysPrctl:           sysPrctlFn,
	sysArchPrctl:       sysArchPrctlFn,
	sysGettidNr:        sysGettid,
	sysTkill:           sysTkillFn,
	sysTimeNr:          sysTime,
	sysFutexNr:         sysFutex,
	sysSchedGetaffNr:   sysSchedGetaffinity,
	sysEpollCreate:     sysEpollCreateFn,
	sysSetTidAddrNr:    sysSetTidAddress,
	sysClockGettimeNr:  sysClockGettime,
	sysClockGetresNr:   sysClockGetres,
	sysClockNanosleepN: sysClockNanosleep,
	sysExitGroupNr:     sysExitGroup,
	sysEpollWait:       sysEpollWaitFn,
	sysEpollCtl:        sysEpollCtlFn,
	sysTgkill:          sysTgkillFn,
	sysOpenat:          sysOpenatFn,
	sysNewfstatat:      sysNewfstatatFn,
	sysReadlinkat:      sysReadlinkatFn,
	sysFaccessat:       sysFaccessatFn,
	sysEpollPwait:      sysEpollPwaitFn,
	sysEventfd2:        sysEventfd2Fn,
	sysEpollCreate1:    sysEpollCreate1Fn,
	sysPrlimit64:       sysPrlimit64Fn,
	sysGetrandom:       sysGetrandomFn,
	sysFaccessat2:      sysFaccessat2Fn,
	sysEpollPwait2:     sysEpollPwait2Fn,
	sysAmberMarkNr:     sysAmberMark,
	sysPollNr:          sysPollFn,
	sysPpollNr:         sysPpollFn,
	// The file system.
	sysPwrite64Nr:    sysPwriteFn,
	sysPipe:          sysPipeFn,
	sysDup:           sysDupFn,
	sysDup2:          sysDup2Fn,
	sysSendfile:      sysENOSYS,
	sysFlock:         sysFdNopFn,
	sysFsync:         sysFsyncFn,
	sysFdatasync:     sysFsyncFn,
	sysTruncate:      sysTruncateFn,
	sysFtruncate:     sysFtruncateFn,
	sysChdir:         sysChdirFn,
	sysFchdir:        sysFchdirFn,
	sysRename:        sysRenameFn,
	sysMkdir:         sysMkdirFn,
	sysRmdir:         sysRmdirFn,
	sysCreat:         sysCreatFn,
	sysLink:          sysLinkFn,
	sysUnlink:        sysUnlinkFn,
	sysSymlink:       sysSymlinkFn,
	sysChmod:         sysChmodFn,
	sysFchmod:        sysFchmodFn,
	sysChown:         sysChownFn,
	sysFchown:        sysFchownFn,
	sysLchown:        sysLchownFn,
	sysUmask:         sysUmaskFn,
	sysUtime:         sysUtimeFn,
	sysSync:          sysZero,
	sysGetdents64:    sysGetdents64Fn,
	sysFadvise64:     sysFdNopFn,
	sysUtimes:        sysUtimesFn,
	sysMkdirat:       sysMkdiratFn,
	sysFchownat:      sysFchownatFn,
	sysFutimesat:     sysFutimesatFn,
	sysUnlinkat:      sysUnlinkatFn,
	sysRenameat:      sysRenameatFn,
	sysLinkat:        sysLinkatFn,
	sysSymlinkat:     sysSymlinkatFn,
	sysFchmodat:      sysFchmodatFn,
	sysSplice:        sysSpliceFn,
	sysUtimensat:     sysUtimensatFn,
	sysEventfd:       sysEventfdFn,
	sysFallocate:     sysEOPNOTSUPP,
	sysDup3:          sysDup3Fn,
	sysPipe2:         sysPipe2Fn,
	sysPreadv:        sysPreadvFn,
	sysPwritev:       sysPwritevFn,
	sysSyncfs:        sysFdNopFn,
	sysRenameat2:     sysRenameat2Fn,
	sysCopyFileRange: sysENOSYS,
	sysStatx:         sysENOSYS,
	sysOpenat2:       sysENOSYS,
	sysFchmodat2:     sysENOSYS,
	sysMknod:         sysMknodFn,
	sysMknodat:       sysMknodatFn,
	sysGetgroups:     sysZero,
	// Sockets.
	sysSocket:      sysSocketFn,
	sysConnect:     sysConnectFn,
	sysAccept:      sysAcceptFn,
	sysSendto:      sysSendtoFn,
	sysRecvfrom:    sysRecvfromFn,
	sysSendmsg:     sysSendmsgFn,
	sysRecvmsg:     sysRecvmsgFn,
	sysShutdown:    sysShutdownFn,
	sysBind:        sysBindFn,
	sysListen:      sysListenFn,
	sysGetsockname: sysGetsocknameFn,
	sysGetpeername: sysGetpeernameFn,
	sysSocketpair:  sysSocketpairFn,
	sysSetsockopt:  sysSetsockoptFn,
	sysGetsockopt:  sysGetsockoptFn,
	sysAccept4:     sysAccept4Fn,
	// Extended attributes.
	sysSetxattr:     sysXattrPathFn,
	sysLsetxattr:    sysXattrLpathFn,
	sysFsetxattr:    sysXattrFDFn,
	sysGetxattr:     sysXattrPathFn,
	sysLgetxattr:    sysXattrLpathFn,
	sysFgetxattr:    sysXattrFDFn,
	sysListxattr:    sysListxattrFn,
	sysLlistxattr:   sysLlistxattrFn,
	sysFlistxattr:   sysFlistxattrFn,
	sysRemovexattr:  sysXattrPathFn,
	sysLremovexattr: sysXattrLpathFn,
	sysFremovexattr: sysXattrFDFn,
	sysSetxattrat:   sysENOSYS,
	sysGetxattrat:   sysENOSYS,
	sysListxattrat:  sysENOSYS,
	sysRemovexattrt: sysENOSYS,
	// pidfds.
	sysPidfdSendSignal: sysENOSYS,
	sysPidfdOpen:       sysENOSYS,
	sysPidfdGetfd:      sysENOSYS,
	sysAmberLoadFiles:  sysAmberLoadFilesFn,
	// Tests reach the exception table through it (uaccess.go).
	sysAmberUaccessProbe: sysAmberUaccessProbeFn,
	sysAmberService:      sysAmberServiceFn,
	// Guest tests wait for device interrupts through it (irq.go).
	boot.SysAmberIRQCount: sysAmberIRQCountFn,
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
func sysArchPrctlFn(f *sysFrame) int64 {
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
func sysPrctlFn(f *sysFrame) int64 { return -eINVAL }

//go:nosplit
func sysWait4Fn(f *sysFrame) int64 { return -eCHILD }

// utsBuf holds the struct utsname uname copies out.
var utsBuf [6 * 65]byte

// uname: Linux-compatible answers; programs parse the release.
//
//go:nosplit
func sysUnameFn(f *sysFrame) int64 {
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
func sysPrlimit64Fn(f *sysFrame) int64 {
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
	// splitmix64 over the VMM's seed and the TSC.
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
func sysGetrandomFn(f *sysFrame) int64 {
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
// none) or input; under other VMMs it spins on the clock and the UART.
//
//go:nosplit
func idleWait(deadline int64) int {
	if pvHypercalls {
		return int(hcall(boot.HCIdle, uint64(deadline), 0, 0))
	}
	for deadline == 0 || nanotime() < deadline {
		if uart16550.Ready(uart16550.COM1) {
			return idleInput
		}
	}
	return 0
}

const idleInput = boot.IdleInput

var _ = unsafe.Pointer(nil)
