package vmm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
	"github.com/sirupsen/logrus"
)

// The user-mode network: a rootless network in this process, with QEMU's
// user-network addresses, built on gvisor-tap-vsock (the network podman
// machine and others run as gvproxy): a virtual switch whose other port
// is a gVisor TCP/IP stack that is the gateway (10.0.2.2), answers ARP,
// DHCP and DNS, and NATs the guest's TCP and UDP flows to host sockets;
// its port forwarder listens on host addresses and connects through the
// stack to the guest. The device's frames enter the switch as one of its
// ports (the "bess" framing: one Ethernet frame per Read or Write of an
// in-process net.Conn), so no socket or helper process is involved.
//
// Why this and not the alternatives (docs/architecture.md): passt is an
// external process (C, one more binary to install, a unix socket hop
// per frame); hand-written NAT is a TCP implementation to maintain;
// gVisor's netstack alone has the TCP/IP but not the DHCP, DNS and
// forwarding services gvisor-tap-vsock adds, which are maintained and in
// production use.

// QEMU's user-network addresses, which the guest gets on its command line
// (UserNetCmdline) or by DHCP.
const (
	UserNetSubnet  = "10.0.2.0/24"
	UserNetGateway = "10.0.2.2" // the gateway, and the host's 127.0.0.1 through NAT
	UserNetDNS     = "10.0.2.3" // forwarded to the host's resolver
	UserNetGuest   = "10.0.2.15"
	// UserNetMTU is the user network's MTU: large, so TCP moves 64 KiB
	// segments without segmentation offloads (the stack on the host side
	// segments to the guest's MSS, which is the guest's choice).
	UserNetMTU = 65520
)

// UserNetCmdline is what the guest is told of the user network: its
// address, gateway and DNS server (kernel options).
func UserNetCmdline() []string {
	return []string{"amber.ip=" + UserNetGuest + "/24", "amber.gw=" + UserNetGateway, "amber.dns=" + UserNetDNS}
}

// HostFwd is one port forward from the host to the guest (QEMU's
// hostfwd=PROTO:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT).
type HostFwd struct {
	UDP       bool
	HostAddr  string // "" is every address (QEMU's default)
	HostPort  int
	GuestAddr string // "" is the guest's address, 10.0.2.15
	GuestPort int
}

// NetSpec is a parsed --net option.
type NetSpec struct {
	User     bool
	Forwards []HostFwd // User only
	Tap      string    // tap=NAME
	MAC      net.HardwareAddr
}

// ParseNetSpec reads the --net option: user[,hostfwd=...][,mac=...] (QEMU's
// -netdev user spelling, several hostfwd allowed) or tap=NAME[,mac=...].
func ParseNetSpec(spec string) (NetSpec, error) {
	var s NetSpec
	parts := strings.Split(spec, ",")
	switch {
	case parts[0] == "user":
		s.User = true
	case strings.HasPrefix(parts[0], "tap="):
		s.Tap = strings.TrimPrefix(parts[0], "tap=")
		if s.Tap == "" || len(s.Tap) >= 16 || strings.ContainsAny(s.Tap, "/ \t") {
			return s, fmt.Errorf("%q: tap=NAME wants an interface name of 1 to 15 characters", parts[0])
		}
	default:
		return s, fmt.Errorf("%q: want user[,hostfwd=tcp:HOSTADDR:PORT-:GUESTPORT,...] or tap=NAME", spec)
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch {
		case k == "hostfwd" && s.User:
			f, err := parseHostFwd(v)
			if err != nil {
				return s, err
			}
			s.Forwards = append(s.Forwards, f)
		case k == "mac":
			m, err := net.ParseMAC(v)
			if err != nil || len(m) != 6 {
				return s, fmt.Errorf("mac=%s: want six hex bytes like 52:54:00:12:34:56", v)
			}
			if m[0]&1 != 0 {
				return s, fmt.Errorf("mac=%s is a multicast address", v)
			}
			s.MAC = m
		default:
			return s, fmt.Errorf("%q: unknown option %q (user takes hostfwd= and mac=, tap= takes mac=)", spec, p)
		}
	}
	seen := map[string]bool{}
	for _, f := range s.Forwards {
		k := fmt.Sprintf("%v/%s/%d", f.UDP, f.HostAddr, f.HostPort)
		if seen[k] {
			return s, fmt.Errorf("hostfwd: host port %d forwarded twice", f.HostPort)
		}
		seen[k] = true
	}
	return s, nil
}

// parseHostFwd reads [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT.
func parseHostFwd(v string) (HostFwd, error) {
	var f HostFwd
	bad := func(why string) (HostFwd, error) {
		return f, fmt.Errorf("hostfwd=%s: %s (want tcp:HOSTADDR:HOSTPORT-:GUESTPORT, e.g. tcp:127.0.0.1:8080-:80)", v, why)
	}
	rest := v
	if p, r, ok := strings.Cut(v, ":"); ok && (p == "tcp" || p == "udp") {
		f.UDP, rest = p == "udp", r
	} else if ok && p != "" && strings.Contains(r, "-") && !strings.Contains(p, ".") {
		return bad("protocol " + p + " is neither tcp nor udp")
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return bad("no '-' between the host and guest sides")
	}
	port := func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && n > 0 && n < 65536
	}
	addr := func(s string) (string, bool) {
		if s == "" {
			return "", true
		}
		ip := net.ParseIP(s)
		return s, ip != nil && ip.To4() != nil
	}
	ha, hp, ok := strings.Cut(host, ":")
	if !ok {
		return bad("the host side is not HOSTADDR:PORT")
	}
	if f.HostAddr, ok = addr(ha); !ok {
		return bad("host address " + ha + " is not an IPv4 address")
	}
	if f.HostPort, ok = port(hp); !ok {
		return bad("host port " + hp + " is not a port number")
	}
	ga, gp, ok := strings.Cut(guest, ":")
	if !ok {
		ga, gp = "", guest
	}
	if f.GuestAddr, ok = addr(ga); !ok {
		return bad("guest address " + ga + " is not an IPv4 address")
	}
	if f.GuestPort, ok = port(gp); !ok {
		return bad("guest port " + gp + " is not a port number")
	}
	return f, nil
}

// userNet is the user-mode network's end of the device: frames the guest
// sends go to the switch's Read, frames the switch Writes come back
// through Recv.
type userNet struct {
	vn       *virtualnetwork.VirtualNetwork
	forwards []HostFwd
	toNet    chan []byte // frames from the guest (pooled buffers)
	toGuest  chan []byte // frames for the guest (pooled buffers)
	done     chan struct{}
	once     sync.Once
	pool     sync.Pool
	cancel   context.CancelFunc
}

// userNetQueue bounds the frames queued each way: the switch writes to a
// full queue are dropped (as a NIC whose ring is full drops), the guest's
// sends wait.
const userNetQueue = 512

// NewUserNet starts a user-mode network for a guest with the given MAC
// (which gets 10.0.2.15 by DHCP) and host forwards. A forward whose host
// address cannot be listened on is an error here.
func NewUserNet(mac net.HardwareAddr, forwards []HostFwd) (NetBackend, error) {
	// gvisor-tap-vsock logs through logrus to stderr, which is the
	// guest's; its messages are for gvproxy's operators.
	logrus.SetOutput(io.Discard)
	cfg := &types.Configuration{
		MTU:               UserNetMTU,
		Subnet:            UserNetSubnet,
		GatewayIP:         UserNetGateway,
		GatewayMacAddress: "52:55:0a:00:02:02",
		GatewayVirtualIPs: []string{UserNetDNS},
		DHCPStaticLeases:  map[string]string{UserNetGuest: mac.String()},
		Forwards:          map[string]string{},
		NAT: map[string]string{
			UserNetGateway: "127.0.0.1",
			UserNetDNS:     hostNameserver(),
		},
	}
	for _, f := range forwards {
		local := net.JoinHostPort(f.HostAddr, strconv.Itoa(f.HostPort))
		if f.HostAddr == "" {
			local = net.JoinHostPort("0.0.0.0", strconv.Itoa(f.HostPort))
		}
		if f.UDP {
			local = "udp:" + local
		}
		ga := f.GuestAddr
		if ga == "" {
			ga = UserNetGuest
		}
		cfg.Forwards[local] = net.JoinHostPort(ga, strconv.Itoa(f.GuestPort))
	}
	vn, err := virtualnetwork.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("user-mode network: %w", err)
	}
	u := &userNet{
		vn: vn, forwards: forwards,
		toNet: make(chan []byte, userNetQueue), toGuest: make(chan []byte, userNetQueue),
		done: make(chan struct{}),
	}
	u.pool.New = func() any { return make([]byte, 0, UserNetMTU+netMaxFrameOverhead) }
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go vn.AcceptBess(ctx, userConn{u})
	return u, nil
}

// hostNameserver is the host's first IPv4 name server (QEMU's user
// network forwards 10.0.2.3 to it too); 127.0.0.1 without one.
func hostNameserver() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "nameserver" {
				if ip := net.ParseIP(f[1]); ip != nil && ip.To4() != nil {
					return f[1]
				}
			}
		}
	}
	return "127.0.0.1"
}

func (u *userNet) MTU() int       { return UserNetMTU }
func (u *userNet) Verified() bool { return true }

func (u *userNet) buf(frame []byte) []byte {
	b := u.pool.Get().([]byte)
	return append(b[:0], frame...)
}

var errNetClosed = errors.New("network closed")

func (u *userNet) Send(frame []byte) error {
	if len(frame) > UserNetMTU+netMaxFrameOverhead {
		return fmt.Errorf("frame of %d bytes exceeds the MTU", len(frame))
	}
	select {
	case u.toNet <- u.buf(frame):
		return nil
	case <-u.done:
		return errNetClosed
	}
}

func (u *userNet) Recv(buf []byte) (int, error) {
	select {
	case b := <-u.toGuest:
		n := copy(buf, b)
		u.pool.Put(b[:0])
		return n, nil
	case <-u.done:
		return 0, errNetClosed
	}
}

// Close stops the port forwards (their host listeners) and the switch's
// port. The stack's own goroutines (DHCP, DNS) end with the process.
func (u *userNet) Close() error {
	u.once.Do(func() {
		close(u.done)
		u.cancel()
		mux := u.vn.ServicesMux()
		for _, f := range u.forwards {
			local := net.JoinHostPort(f.HostAddr, strconv.Itoa(f.HostPort))
			if f.HostAddr == "" {
				local = net.JoinHostPort("0.0.0.0", strconv.Itoa(f.HostPort))
			}
			proto := "tcp"
			if f.UDP {
				proto = "udp"
			}
			body := fmt.Sprintf(`{"local":%q,"protocol":%q}`, local, proto)
			req, _ := http.NewRequest(http.MethodPost, "/services/forwarder/unexpose", strings.NewReader(body))
			mux.ServeHTTP(discardResponse{}, req)
		}
	})
	return nil
}

// userConn is the switch's port: Read gives it the guest's next frame,
// Write takes a frame for the guest.
type userConn struct{ u *userNet }

func (c userConn) Read(b []byte) (int, error) {
	select {
	case f := <-c.u.toNet:
		n := copy(b, f)
		c.u.pool.Put(f[:0])
		return n, nil
	case <-c.u.done:
		return 0, io.EOF
	}
}

func (c userConn) Write(b []byte) (int, error) {
	select {
	case <-c.u.done:
		return 0, net.ErrClosed
	default:
	}
	select {
	case c.u.toGuest <- c.u.buf(b):
	default: // the guest is not taking frames: drop, as a full ring does
	}
	return len(b), nil
}

func (c userConn) Close() error                     { return nil }
func (c userConn) LocalAddr() net.Addr              { return userAddr{} }
func (c userConn) RemoteAddr() net.Addr             { return userAddr{} }
func (c userConn) SetDeadline(time.Time) error      { return nil }
func (c userConn) SetReadDeadline(time.Time) error  { return nil }
func (c userConn) SetWriteDeadline(time.Time) error { return nil }

type userAddr struct{}

func (userAddr) Network() string { return "virtio-net" }
func (userAddr) String() string  { return "guest" }

// discardResponse is an http.ResponseWriter that keeps nothing, for the
// in-process calls of the network's service API.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}
