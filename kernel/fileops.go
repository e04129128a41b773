package kernel

// The file-operations table. Every open file description has a kind
// (ofile.kind) and fileKinds[kind] says what reading, writing, stat,
// readiness, seeking, ioctl, fcntl and the last close do for it, so a new
// kind of file is one file implementing fileKind (embedding baseFile for
// what it does not support) plus one row here.
//
// The table is of interfaces rather than structs of function values:
// the operations call back into code that dispatches through the table
// (a pipe read that blocks drops its reference with putOFD, which runs
// the kind's release), and Go reports such a chain from a variable's
// initializer back to the variable as an initialization cycle, which an
// interface method call does not count. The table must be initialized
// statically, without an init function: the runtime's first system calls
// come before any package is initialized. Each row points to a zero-size
// value, the calls are indirect (the linker's nosplit check starts afresh
// behind them) and nothing is allocated; every method is nosplit like the
// rest of the core.

type fileKind interface {
	// read and write transfer at the file offset (pos < 0) or at pos;
	// the access mode and the count limit are checked by the caller.
	read(o *ofile, buf, n uintptr, pos int64) int64
	write(o *ofile, buf, n uintptr, pos int64) int64
	// stat fills st (zeroed by the caller).
	stat(o *ofile, st *statT)
	// ready reports readiness as epoll events (poll's bits are the same).
	ready(o *ofile) uint32
	// pollable says whether epoll accepts the file (Linux refuses
	// regular files and directories with EPERM).
	pollable(o *ofile) bool
	// gen is a counter bumped on every readiness change, for
	// edge-triggered interests; edge is false if the kind has none and
	// reports level-triggered.
	gen(o *ofile) (g uint32, edge bool)
	seek(o *ofile, off int64, whence uint64) int64
	// ioctl serves the requests the generic code does not (FIONBIO,
	// FIOCLEX, FIONCLEX).
	ioctl(o *ofile, req, arg uint64) int64
	// fcntl serves the kind-specific commands (pipe size).
	fcntl(o *ofile, cmd, arg uint64) int64
	// release runs at the last close of the description.
	release(o *ofile)
}

// Kinds of open file description (ofile.kind).
const (
	fdFree = iota
	fdInode
	fdEventfd
	fdEpoll
	fdPipe
	fdSvcQueue  // a service's request queue (service.go)
	fdSvcObject // the program's side of a service object (service.go)
	fdBlk
	fdSocket
	fdData   // a file or directory on the persistent file system (datafile.go)
	fdNetDev // the network interface's frames (netdev.go)
	nKinds
)

var fileKinds = [nKinds]fileKind{
	fdFree:      &baseFile{},
	fdInode:     &inodeFile{},
	fdEventfd:   &eventfdFile{},
	fdEpoll:     &epollFile{},
	fdPipe:      &pipeFile{},
	fdSvcQueue:  &svcQueueFile{},
	fdSvcObject: &svcObjectFile{},
	fdBlk:       &blkFile{},
	fdSocket:    &socketFile{},
	fdData:      &dataFile{},
	fdNetDev:    &netDevFile{},
}

//go:nosplit
func kindOf(o *ofile) fileKind { return fileKinds[o.kind] }

// baseFile is what a kind does not support, answered the way Linux
// answers for an anonymous inode (eventfd, epoll).
type baseFile struct{}

//go:nosplit
func (*baseFile) read(o *ofile, buf, n uintptr, pos int64) int64 { return -eINVAL }

//go:nosplit
func (*baseFile) write(o *ofile, buf, n uintptr, pos int64) int64 { return -eINVAL }

//go:nosplit
func (*baseFile) stat(o *ofile, st *statT) {
	st.dev = fsDev + 2
	st.nlink = 1
	st.mode = 0o600
	st.blksize = pageSize
}

//go:nosplit
func (*baseFile) ready(o *ofile) uint32 { return 0 }

//go:nosplit
func (*baseFile) pollable(o *ofile) bool { return false }

//go:nosplit
func (*baseFile) gen(o *ofile) (uint32, bool) { return 0, false }

//go:nosplit
func (*baseFile) seek(o *ofile, off int64, whence uint64) int64 { return -eSPIPE }

//go:nosplit
func (*baseFile) ioctl(o *ofile, req, arg uint64) int64 { return -eNOTTY }

//go:nosplit
func (*baseFile) fcntl(o *ofile, cmd, arg uint64) int64 {
	if cmd == fGetPipeSz || cmd == fSetPipeSz {
		return -eBADF
	}
	return -eINVAL
}

//go:nosplit
func (*baseFile) release(o *ofile) {}
