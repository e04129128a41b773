package netsvc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The machine's network interface: the kernel's virtio-net device as a
// descriptor of whole Ethernet frames (kernel/netdev.go), made a gVisor
// link endpoint by gVisor's own pieces — a channel endpoint (a queue of
// outbound packets and an inbound injection point) under an ethernet
// endpoint (the Ethernet header both ways, and ARP through the stack) —
// and two goroutines that move frames between the channel and the
// descriptor. Both park in the runtime's netpoller: the descriptor is
// non-blocking and epoll reports it readable while received frames wait.

// The ioctls of the NIC descriptor (kernel/netdev.go).
const (
	ioctlNetInfo = 0x414d5302
	ioctlNetOpts = 0x414d5303
	netOptsMax   = 512
)

type netInfo struct {
	MAC      [6]byte
	HasMAC   uint8
	_        uint8
	MTU      uint32
	Dropped  uint64
	Features uint64 // negotiated with the device
	Offered  uint64 // the device's
	BadTx    uint64
}

// virtio-net features and header flags (drivers/virtio/net.go).
const (
	featCsum      = 1 << 0
	featGuestCsum = 1 << 1
	hdrLen        = 12
	hdrNeedsCsum  = 1
	hdrDataValid  = 2
)

// NetConfig is the interface's configuration: from the command line
// (amber.ip=ADDR/LEN or amber.ip=dhcp, amber.gw=, amber.dns=A[,B],
// amber.ip6=ADDR/LEN, amber.hostname=) or from DHCP.
type NetConfig struct {
	DHCP     bool
	Addr     netip.Prefix // IPv4
	Gateway  netip.Addr
	DNS      []netip.Addr
	Addr6    netip.Prefix
	Hostname string
}

// ParseNetConfig reads the command line's network options (space
// separated).
func ParseNetConfig(opts string) (NetConfig, error) {
	var c NetConfig
	for _, o := range strings.Fields(opts) {
		k, v, _ := strings.Cut(o, "=")
		var err error
		switch k {
		case "amber.ip":
			if v == "dhcp" {
				c.DHCP = true
				continue
			}
			c.Addr, err = netip.ParsePrefix(v)
			if err == nil && !c.Addr.Addr().Is4() {
				err = errors.New("not an IPv4 address (IPv6 goes in amber.ip6=)")
			}
		case "amber.gw":
			c.Gateway, err = netip.ParseAddr(v)
			if err == nil && !c.Gateway.Is4() {
				err = errors.New("not an IPv4 address")
			}
		case "amber.dns":
			for _, s := range strings.Split(v, ",") {
				a, e := netip.ParseAddr(s)
				if e != nil {
					err = e
					break
				}
				c.DNS = append(c.DNS, a)
			}
		case "amber.ip6":
			c.Addr6, err = netip.ParsePrefix(v)
			if err == nil && !c.Addr6.Addr().Is6() {
				err = errors.New("not an IPv6 address")
			}
		case "amber.hostname":
			c.Hostname = v
		default:
			err = errors.New("unknown option")
		}
		if err != nil {
			return c, fmt.Errorf("%s: %v", o, err)
		}
	}
	return c, nil
}

// nic is the running interface.
type nic struct {
	s    *Service
	f    *os.File
	ch   *channel.Endpoint
	link *offloadLink
	mac  tcpip.LinkAddress // receive's (restored) and startNIC's
	conf NetConfig         // receive's once startNIC returned
	up   chan struct{}     // closed when startNIC has configured the interface
}

// startNIC brings up the machine's network interface, if it has one.
func startNIC(s *Service) error {
	f, err := s.q.OpenNetDev()
	if errors.Is(err, syscall.ENODEV) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network interface: %w", err)
	}
	var info netInfo
	opts := make([]byte, netOptsMax)
	var nopts uintptr
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlNetInfo, uintptr(unsafe.Pointer(&info)))
		if errno == 0 {
			nopts, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlNetOpts, uintptr(unsafe.Pointer(&opts[0])))
		}
	})
	if errno != 0 {
		f.Close()
		return fmt.Errorf("network interface: %w", errno)
	}
	conf, err := ParseNetConfig(string(opts[:nopts]))
	if err != nil {
		f.Close()
		return fmt.Errorf("network configuration: %v", err)
	}
	mac := info.MAC
	if info.HasMAC == 0 {
		mac = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56} // QEMU's default
	}
	n := &nic{s: s, f: f, mac: tcpip.LinkAddress(mac[:]), conf: conf, up: make(chan struct{})}
	n.ch = channel.New(256, info.MTU+header.EthernetMinimumSize, n.mac)
	features := info.Features
	if os.Getenv("AMBER_NET_OFFLOAD") == "off" {
		// Checksums in software both ways, as without the offloads (to
		// measure what they save).
		features &^= featCsum | featGuestCsum
	}
	n.link = newOffloadLink(n.ch, features)
	if err := s.stack.CreateNIC(ethNIC, ethernet.New(n.link)); err != nil {
		f.Close()
		return fmt.Errorf("network interface: %v", err)
	}
	// The IPv6 link-local address from the MAC (RFC 4291, appendix A).
	ll := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: header.LinkLocalAddr(n.mac).WithPrefix()}
	ll.AddressWithPrefix.PrefixLen = 64
	if err := s.stack.AddProtocolAddress(ethNIC, ll, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("IPv6 link-local address: %v", err)
	}
	if debug {
		fmt.Fprintf(os.Stderr, "netsvc: virtio-net features offered %#x, taken %#x\n", info.Offered, info.Features)
	}
	go n.receive()
	go n.transmit()
	if conf.DHCP {
		c, err := dhcp(s.stack, n.mac)
		if err != nil {
			return fmt.Errorf("DHCP: %v", err)
		}
		c.Addr6, c.Hostname = conf.Addr6, conf.Hostname
		conf = c
	}
	n.conf = conf
	if err := configure(s.stack, conf); err != nil {
		return err
	}
	close(n.up)
	return writeResolver(conf)
}

// addIPv4 gives the interface c's IPv4 address and returns routes with
// its subnet's route and, if c has one, the default route through the
// gateway.
func addIPv4(st *stack.Stack, c NetConfig, routes []tcpip.Route) ([]tcpip.Route, error) {
	a := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(c.Addr.Addr().As4()), PrefixLen: c.Addr.Bits()}}
	if err := st.AddProtocolAddress(ethNIC, a, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("address %v: %v", c.Addr, err)
	}
	routes = append(routes, tcpip.Route{Destination: a.AddressWithPrefix.Subnet(), NIC: ethNIC})
	if c.Gateway.IsValid() {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(c.Gateway.As4()), NIC: ethNIC})
	}
	return routes, nil
}

// configure gives the interface its addresses and routes.
func configure(st *stack.Stack, c NetConfig) error {
	routes := st.GetRouteTable()
	if c.Addr.IsValid() {
		var err error
		if routes, err = addIPv4(st, c, routes); err != nil {
			return err
		}
	}
	if c.Addr6.IsValid() {
		a := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFrom16(c.Addr6.Addr().As16()), PrefixLen: c.Addr6.Bits()}}
		if err := st.AddProtocolAddress(ethNIC, a, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("address %v: %v", c.Addr6, err)
		}
		routes = append(routes, tcpip.Route{Destination: a.AddressWithPrefix.Subnet(), NIC: ethNIC})
	}
	// Link-local IPv6 always reaches the interface.
	routes = append(routes, tcpip.Route{Destination: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80}), PrefixLen: 64}.Subnet(), NIC: ethNIC})
	st.SetRouteTable(routes)
	return nil
}

// writeResolver writes /etc/resolv.conf and /etc/hosts in the in-memory
// root for Go's resolver: the DNS servers, and names for this machine
// and the gateway ("gateway", the host under QEMU's user network).
func writeResolver(c NetConfig) error {
	var rc strings.Builder
	for _, d := range c.DNS {
		fmt.Fprintf(&rc, "nameserver %v\n", d)
	}
	if rc.Len() > 0 {
		if err := os.WriteFile("/etc/resolv.conf", []byte(rc.String()), 0o644); err != nil {
			return err
		}
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if c.Addr.IsValid() && c.Hostname != "" {
		hosts += fmt.Sprintf("%v\t%s\n", c.Addr.Addr(), c.Hostname)
	}
	if c.Gateway.IsValid() {
		hosts += fmt.Sprintf("%v\tgateway\n", c.Gateway)
	}
	return os.WriteFile("/etc/hosts", []byte(hosts), 0o644)
}

// receive hands every frame the device delivers to the stack; gVisor
// checks them (a frame too short for its headers is dropped), and its
// checksums unless the device vouched for them (offloadLink.deliver).
func (n *nic) receive() {
	buf := make([]byte, 2048)
	for {
		k, err := n.f.Read(buf)
		if errors.Is(err, syscall.ENETRESET) {
			n.restored() // restore.go
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "amber: network interface: %v\n", err)
			return
		}
		if k <= hdrLen {
			continue
		}
		n.link.deliver(buf[0], buf[hdrLen:k])
	}
}

// transmit sends the stack's outbound frames, each after its
// virtio_net_hdr (offloadLink.header: the checksum the device completes).
func (n *nic) transmit() {
	buf := make([]byte, 0, hdrLen+2048)
	var held txHold
	for {
		pkt := n.ch.ReadContext(context.Background())
		if pkt == nil {
			return
		}
		buf = buf[:hdrLen]
		for _, s := range pkt.AsSlices() {
			buf = append(buf, s...)
		}
		pkt.DecRef()
		for _, f := range n.link.outgoing(&held, buf) {
			if _, err := n.f.Write(f); err != nil && !errors.Is(err, syscall.EMSGSIZE) {
				fmt.Fprintf(os.Stderr, "amber: network interface: %v\n", err)
				return
			}
		}
	}
}
