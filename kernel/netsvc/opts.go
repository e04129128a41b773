package netsvc

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/syserr"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// errnoOf is Linux's errno for a netstack error (gVisor's own table).
func errnoOf(err tcpip.Error) syscall.Errno {
	return syscall.Errno(syserr.TranslateNetstackError(err).ToLinux())
}

// connErrs are the netstack errors a connection's read or write can end
// with; gonet passes on only their text.
var connErrs = []tcpip.Error{&tcpip.ErrConnectionReset{}, &tcpip.ErrTimeout{}, &tcpip.ErrConnectionAborted{},
	&tcpip.ErrConnectionRefused{}, &tcpip.ErrNetworkUnreachable{}, &tcpip.ErrHostUnreachable{}}

// errnoOfConn is the errno behind a gonet connection's error
// (ECONNRESET when it is none of connErrs).
func errnoOfConn(err error) syscall.Errno {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return syscall.ETIMEDOUT
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		for _, e := range connErrs {
			if oe.Err.Error() == e.String() {
				return errnoOf(e)
			}
		}
	}
	return syscall.ECONNRESET
}

// IPPROTO_TCP and IPPROTO_IPV6 options Go's net sets.
const (
	tcpNodelay   = 1
	tcpKeepidle  = 4
	tcpKeepintvl = 5
	tcpKeepcnt   = 6
	ipv6V6only   = 26
)

func (k *sock) getsockopt(level, name int, val, lenp uint64) int64 {
	v := int32(0)
	so := k.ep.SocketOptions()
	switch {
	case level == syscall.SOL_SOCKET && name == syscall.SO_LINGER:
		// struct linger, two ints: l_onoff, l_linger (seconds).
		l := so.GetLinger()
		var b [8]byte
		binary.LittleEndian.PutUint32(b[:], uint32(b2i(l.Enabled)))
		binary.LittleEndian.PutUint32(b[4:], uint32(l.Timeout/time.Second))
		putOpt(b[:], val, lenp)
		return 0
	case level == syscall.SOL_SOCKET && name == syscall.SO_ERROR:
		k.mu.Lock()
		v, k.soErr = int32(k.soErr), 0
		k.mu.Unlock()
	case level == syscall.SOL_SOCKET && name == syscall.SO_TYPE:
		v = syscall.SOCK_DGRAM
		if k.stream {
			v = syscall.SOCK_STREAM
		}
	case level == syscall.SOL_SOCKET && name == syscall.SO_DOMAIN:
		v = int32(k.family)
	case level == syscall.SOL_SOCKET && name == syscall.SO_ACCEPTCONN:
		if k.listening {
			v = 1
		}
	case level == syscall.SOL_SOCKET && name == syscall.SO_REUSEADDR:
		v = b2i(so.GetReuseAddress())
	case level == syscall.SOL_SOCKET && name == syscall.SO_KEEPALIVE:
		v = b2i(so.GetKeepAlive())
	case level == syscall.SOL_SOCKET && name == syscall.SO_BROADCAST:
		v = b2i(so.GetBroadcast())
	case level == syscall.SOL_SOCKET && name == syscall.SO_SNDBUF:
		v = int32(so.GetSendBufferSize())
	case level == syscall.SOL_SOCKET && name == syscall.SO_RCVBUF:
		v = int32(so.GetReceiveBufferSize())
	case level == syscall.IPPROTO_TCP && name == tcpNodelay:
		v = b2i(!so.GetDelayOption())
	case level == syscall.IPPROTO_TCP && name == tcpKeepidle:
		var o tcpip.KeepaliveIdleOption
		if err := k.ep.GetSockOpt(&o); err == nil {
			v = int32(time.Duration(o) / time.Second)
		}
	case level == syscall.IPPROTO_TCP && name == tcpKeepintvl:
		var o tcpip.KeepaliveIntervalOption
		if err := k.ep.GetSockOpt(&o); err == nil {
			v = int32(time.Duration(o) / time.Second)
		}
	case level == syscall.IPPROTO_TCP && name == tcpKeepcnt:
		n, _ := k.ep.GetSockOptInt(tcpip.KeepaliveCountOption)
		v = int32(n)
	case level == syscall.IPPROTO_IPV6 && name == ipv6V6only:
		v = b2i(so.GetV6Only())
	case level == syscall.SOL_SOCKET, level == syscall.IPPROTO_TCP, level == syscall.IPPROTO_IP, level == syscall.IPPROTO_IPV6:
		v = 0 // accepted, not modelled
	default:
		return -int64(syscall.ENOPROTOOPT)
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(v))
	putOpt(b[:], val, lenp)
	return 0
}

// putOpt writes an option's value b to val, at most *lenp bytes, and the
// count written to *lenp (the core checked both).
func putOpt(b []byte, val, lenp uint64) {
	l := mem(lenp, 4)
	n := int(int32(binary.LittleEndian.Uint32(l)))
	if n > len(b) {
		n = len(b)
	}
	copy(mem(val, uint64(n)), b[:n])
	binary.LittleEndian.PutUint32(l, uint32(n))
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func (k *sock) setsockopt(level, name int, val []byte) int64 {
	if level == syscall.SOL_SOCKET && name == syscall.SO_LINGER {
		// A close with l_onoff set and l_linger 0 resets the
		// connection (gVisor's close sends RST then), as on Linux.
		if len(val) < 8 {
			return -int64(syscall.EINVAL)
		}
		on := int32(binary.LittleEndian.Uint32(val))
		secs := int32(binary.LittleEndian.Uint32(val[4:]))
		if secs < 0 {
			secs = 0
		}
		k.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: on != 0, Timeout: time.Duration(secs) * time.Second})
		return 0
	}
	if len(val) < 4 {
		if len(val) == 0 {
			return -int64(syscall.EINVAL)
		}
		val = append(val, make([]byte, 4-len(val))...)
	}
	v := int(int32(binary.LittleEndian.Uint32(val)))
	so := k.ep.SocketOptions()
	var err tcpip.Error
	switch {
	case level == syscall.SOL_SOCKET && name == syscall.SO_REUSEADDR:
		so.SetReuseAddress(v != 0)
	case level == syscall.SOL_SOCKET && name == 15: // SO_REUSEPORT
		so.SetReusePort(v != 0)
	case level == syscall.SOL_SOCKET && name == syscall.SO_KEEPALIVE:
		so.SetKeepAlive(v != 0)
	case level == syscall.SOL_SOCKET && name == syscall.SO_BROADCAST:
		so.SetBroadcast(v != 0)
	case level == syscall.SOL_SOCKET && name == syscall.SO_SNDBUF:
		so.SetSendBufferSize(int64(v), true)
	case level == syscall.SOL_SOCKET && name == syscall.SO_RCVBUF:
		so.SetReceiveBufferSize(int64(v), true)
	case level == syscall.IPPROTO_TCP && name == tcpNodelay:
		so.SetDelayOption(v == 0)
	case level == syscall.IPPROTO_TCP && name == tcpKeepidle:
		o := tcpip.KeepaliveIdleOption(time.Duration(v) * time.Second)
		err = k.ep.SetSockOpt(&o)
	case level == syscall.IPPROTO_TCP && name == tcpKeepintvl:
		o := tcpip.KeepaliveIntervalOption(time.Duration(v) * time.Second)
		err = k.ep.SetSockOpt(&o)
	case level == syscall.IPPROTO_TCP && name == tcpKeepcnt:
		err = k.ep.SetSockOptInt(tcpip.KeepaliveCountOption, v)
	case level == syscall.IPPROTO_IPV6 && name == ipv6V6only:
		so.SetV6Only(v != 0)
	case level == syscall.SOL_SOCKET, level == syscall.IPPROTO_TCP, level == syscall.IPPROTO_IP, level == syscall.IPPROTO_IPV6:
		// accepted, not modelled (SO_LINGER, timeouts, multicast, ...)
	default:
		return -int64(syscall.ENOPROTOOPT)
	}
	if err != nil {
		return -int64(errnoOf(err))
	}
	return 0
}
