// Package service is the service side of Amber's hand-off from the kernel
// core to ordinary Go code (docs/kernel.md, "Services").
//
// A service is a goroutine of the program's own runtime that serves files
// the core cannot: sockets on a TCP/IP stack, files on the persistent
// disk. It opens a Queue, creates objects (each one a descriptor the
// program uses like a socket), and loops on Next, which parks it in the
// runtime's netpoller until the core posts a request: data the program
// wrote (Pull it), the program waiting for data (Push some), a synchronous
// call (Complete it), the program's last close (Drop the object).
//
// This is ordinary Go, not kernel core code: it allocates and blocks like
// any program code. Outside Amber, Open fails with ENOSYS.
package service

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// The kernel's amber_service system call and its operations
// (kernel/service.go).
const (
	sysAmberService = 503
	callIoctl       = 0x414d5301 // the ioctl of CallObject (svcAmberCall)
)

const (
	opOpen = iota
	opObject
	opPush
	opPull
	opComplete
	opDrop
	opDataMount // the persistent file system's calls (kernel/datafile.go)
	opDataDone
	opNet // the network service's calls (kernel/netsock.go)
	opEvents
	opName
	opNetDev // the network interface (kernel/netdev.go)
	opDataSynced
)

// Op is what the core asks of the service.
type Op uint32

const (
	// Write: the program wrote; Pull the data.
	Write Op = iota + 1
	// Read: the program waits for data; Push some (or Push nil at its end).
	Read
	// Call: a synchronous call (Args[0] is its argument); Complete it.
	Call
	// Close: the program closed its last descriptor; Drop the object.
	Close
	// Data: a call on the persistent file system (the queue that Mounted
	// it); answer with DataDone(Seq).
	Data
	// DataClose: the program closed the persistent file system's node
	// Args[0].
	DataClose
	// Sock: a socket call on a network socket (the network service's):
	// Sub is the operation, Args the system call's arguments after the
	// descriptor; Complete it.
	Sock
	// DataSync: the program is about to get a signal from the host
	// (Ctrl-C) that may end it; commit the persistent file system, then
	// DataSynced(Seq), and the core delivers the signal.
	DataSync
)

// Kind is the request's kind without its sub-operation.
func (r *Request) Kind() Op { return r.Op & 0xffff }

// Sub is a Sock request's operation.
func (r *Request) Sub() int { return int(r.Op >> 16) }

func (o Op) String() string {
	switch o {
	case Write:
		return "write"
	case Read:
		return "read"
	case Call:
		return "call"
	case Close:
		return "close"
	case Data:
		return "data"
	case DataClose:
		return "data-close"
	case Sock:
		return "sock"
	case DataSync:
		return "data-sync"
	}
	return fmt.Sprintf("op(%d)", uint32(o))
}

// Handle names an object to the kernel.
type Handle uint32

// Request is one request from the core (64 bytes, the kernel's
// svcRequest).
type Request struct {
	Op     Op
	Handle Handle
	Cookie uint64 // the cookie the object was created with
	Seq    uint64 // Call: the call to Complete
	Args   [5]uint64
}

// Queue is a service's request queue.
type Queue struct {
	f  *os.File
	fd uintptr
}

// Open opens a new service queue.
func Open() (*Queue, error) {
	const oNonblock, oCloexec = syscall.O_NONBLOCK, syscall.O_CLOEXEC
	fd, _, errno := syscall.Syscall(sysAmberService, opOpen, oNonblock|oCloexec, 0)
	if errno != 0 {
		return nil, fmt.Errorf("service: open queue: %w", errno)
	}
	// Non-blocking, so os registers it with the netpoller.
	return &Queue{f: os.NewFile(fd, "amber-service"), fd: fd}, nil
}

// Close closes the queue: the service's objects read end of data and
// refuse writes; outstanding calls fail with EIO.
func (q *Queue) Close() error { return q.f.Close() }

// Next waits for requests and fills reqs with as many as are pending: the
// count. The goroutine parks in the netpoller meanwhile.
func (q *Queue) Next(reqs []Request) (int, error) {
	if len(reqs) == 0 {
		return 0, errors.New("service: Next with no room")
	}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&reqs[0])), len(reqs)*int(unsafe.Sizeof(Request{})))
	n, err := q.f.Read(buf)
	if err != nil {
		return 0, err
	}
	return n / int(unsafe.Sizeof(Request{})), nil
}

func (q *Queue) call(op, a, b, c, d uintptr) (uintptr, error) {
	var r uintptr
	var errno syscall.Errno
	err := q.rawControl(func() {
		r, _, errno = syscall.Syscall6(sysAmberService, op, q.fd, a, b, c, d)
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// rawControl runs f while the queue's descriptor cannot be closed.
func (q *Queue) rawControl(f func()) error {
	rc, err := q.f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(uintptr) { f() })
}

// NewObject creates an object with the service's cookie: the program's
// descriptor for it (non-blocking if asked) and its handle.
func (q *Queue) NewObject(cookie uint64, nonblock bool) (fd int, h Handle, err error) {
	flags := uintptr(syscall.O_CLOEXEC)
	if nonblock {
		flags |= syscall.O_NONBLOCK
	}
	var handle uint64
	r, err := q.call(opObject, uintptr(cookie), flags, uintptr(unsafe.Pointer(&handle)), 0)
	if err != nil {
		return -1, 0, fmt.Errorf("service: new object: %w", err)
	}
	return int(r), Handle(handle), nil
}

// Push gives the program data to read: the count taken (short when its
// ring is full; EAGAIN when nothing fits: wait for the next Read request).
// Push with no data ends the stream: the program reads end of file.
func (q *Queue) Push(h Handle, p []byte) (int, error) {
	var ptr uintptr
	if len(p) > 0 {
		ptr = uintptr(unsafe.Pointer(&p[0]))
	}
	r, err := q.call(opPush, uintptr(h), ptr, uintptr(len(p)), 0)
	return int(r), err
}

// End ends the stream as Push(nil) does, but the program's read that
// reaches its end fails with errno once (ECONNRESET after a reset; 0 is
// plain end of file).
func (q *Queue) End(h Handle, errno syscall.Errno) error {
	_, err := q.call(opPush, uintptr(h), 0, 0, uintptr(errno))
	return err
}

// Pull takes data the program wrote: the count, 0 once the program has
// closed, EAGAIN when there is none (a Write request comes with the next).
func (q *Queue) Pull(h Handle, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, err := q.call(opPull, uintptr(h), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0)
	return int(r), err
}

// Complete answers call seq on h with result (a negative errno fails it).
func (q *Queue) Complete(h Handle, seq uint64, result int64) error {
	_, err := q.call(opComplete, uintptr(h), uintptr(seq), uintptr(result), 0)
	return err
}

// Drop ends the service's use of h: the program reads end of file and its
// writes fail; the object is freed once the program has closed it too.
func (q *Queue) Drop(h Handle) error {
	_, err := q.call(opDrop, uintptr(h), 0, 0, 0)
	return err
}

// MountData makes this queue the server of the persistent file system
// (/data): the core then posts Data and DataClose requests to it. The
// result is the address of the core's call block (kernel/datafile.go's
// dataArgsT), through which every Data request is read and answered.
func (q *Queue) MountData() (unsafe.Pointer, error) {
	r, err := q.call(opDataMount, 0, 0, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("service: mount the persistent file system: %w", err)
	}
	return *(*unsafe.Pointer)(unsafe.Pointer(&r)), nil
}

// DataDone answers Data request seq with result (a negative errno fails
// it).
func (q *Queue) DataDone(seq uint64, result int64) error {
	_, err := q.call(opDataDone, uintptr(seq), uintptr(result), 0, 0)
	return err
}

// DataSynced tells the core DataSync request seq's commit is done (or
// failed): it delivers the signals it held.
func (q *Queue) DataSynced(seq uint64) error {
	_, err := q.call(opDataSynced, uintptr(seq), 0, 0, 0)
	return err
}

// CallObject makes a synchronous call on the program's descriptor fd of a
// service object: it blocks until the service Completes it.
func CallObject(fd int, arg uint64) (int64, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), callIoctl, uintptr(arg))
	if errno != 0 {
		return 0, errno
	}
	return int64(r), nil
}

// ServeNet makes the queue the network service's: socket() for AF_INET
// and AF_INET6 creates its objects (Sock requests).
func (q *Queue) ServeNet() error {
	_, err := q.call(opNet, 0, 0, 0, 0)
	return err
}

// OpenNetDev opens the machine's network interface: a non-blocking
// descriptor of whole Ethernet frames (kernel/netdev.go), registered with
// the netpoller. It fails with ENODEV when there is none.
func (q *Queue) OpenNetDev() (*os.File, error) {
	fd, err := q.call(opNetDev, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(fd, "amber-nic"), nil
}

// SetEvents sets the readiness the service decides for h: on is reported
// whatever its rings hold, off hides what they would report (epoll
// event bits).
func (q *Queue) SetEvents(h Handle, on, off uint32) error {
	_, err := q.call(opEvents, uintptr(h), uintptr(on), uintptr(off), 0)
	return err
}

// NewObjectFlags is NewObject with the descriptor's flags given as
// O_NONBLOCK and O_CLOEXEC bits (an accepted socket's).
func (q *Queue) NewObjectFlags(cookie uint64, flags int) (fd int, h Handle, err error) {
	var handle uint64
	r, err := q.call(opObject, uintptr(cookie), uintptr(flags), uintptr(unsafe.Pointer(&handle)), 0)
	if err != nil {
		return -1, 0, fmt.Errorf("service: new object: %w", err)
	}
	return int(r), Handle(handle), nil
}

// SetName records a network socket's local (peer false) or peer address
// (a struct sockaddr, at most 28 bytes) in the kernel, which answers
// getsockname and getpeername from it.
func (q *Queue) SetName(h Handle, peer bool, addr []byte) error {
	which := uintptr(0)
	if peer {
		which = 1
	}
	var p uintptr
	if len(addr) > 0 {
		p = uintptr(unsafe.Pointer(&addr[0]))
	}
	_, err := q.call(opName, uintptr(h), which, p, uintptr(len(addr)))
	return err
}
