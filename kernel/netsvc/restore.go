package netsvc

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// After a restore from a snapshot the interface may have another MAC
// (every clone of a snapshot gets its own: docs/snapshots.md, "Network").
// The kernel tells the service by failing the NIC descriptor's next read
// once with ENETRESET, before any frame that arrived since
// (kernel/netrestore.go), so the stack never answers with the old
// address. restored then reads the MAC again, gives it to the link
// endpoint (ARP replies and every frame sent from then on carry it) and
// to the IPv6 link-local address derived from it, and, off the receive
// goroutine (DHCP needs it to receive), renews a DHCP lease and
// announces the IPv4 address with a gratuitous ARP, so that a switch or
// host that knew the snapshot's MAC learns the new one.

// restoreMu orders the announcements of restores that follow closely.
var restoreMu sync.Mutex

// restored is receive's response to ENETRESET.
func (n *nic) restored() {
	var info netInfo
	rc, err := n.f.SyscallConn()
	if err != nil {
		return
	}
	var errno syscall.Errno
	rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlNetInfo, uintptr(unsafe.Pointer(&info)))
	})
	if errno != 0 {
		fmt.Fprintf(os.Stderr, "amber: network interface after a restore: %v\n", errno)
		return
	}
	if info.HasMAC != 0 {
		if mac := tcpip.LinkAddress(info.MAC[:]); mac != n.mac {
			n.setMAC(mac)
		}
	}
	go n.announce(n.mac)
}

// setMAC gives the interface a new MAC address.
func (n *nic) setMAC(mac tcpip.LinkAddress) {
	st := n.s.stack
	old := n.mac
	n.ch.SetLinkAddress(mac)
	n.mac = mac
	st.RemoveAddress(ethNIC, header.LinkLocalAddr(old))
	ll := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: header.LinkLocalAddr(mac).WithPrefix()}
	ll.AddressWithPrefix.PrefixLen = 64
	if err := st.AddProtocolAddress(ethNIC, ll, stack.AddressProperties{}); err != nil {
		fmt.Fprintf(os.Stderr, "amber: network interface: IPv6 link-local address: %v\n", err)
	}
}

// announce renews a DHCP lease (the server may know the interface by
// its MAC) and sends a gratuitous ARP for the IPv4 address, once the
// interface was configured at start.
func (n *nic) announce(mac tcpip.LinkAddress) {
	<-n.up
	restoreMu.Lock()
	defer restoreMu.Unlock()
	if n.conf.DHCP {
		c, err := dhcp(n.s.stack, mac)
		if err != nil {
			fmt.Fprintf(os.Stderr, "amber: network: DHCP after a restore: %v (keeping %v)\n", err, n.conf.Addr)
		} else {
			c.DHCP, c.Addr6, c.Hostname = true, n.conf.Addr6, n.conf.Hostname
			if err := n.readdress(c); err != nil {
				fmt.Fprintf(os.Stderr, "amber: network: DHCP after a restore: %v\n", err)
			} else {
				writeResolver(c)
			}
		}
	}
	if n.conf.Addr.IsValid() {
		// The device file takes each frame after its virtio_net_hdr (nic.transmit).
		n.f.Write(append(make([]byte, hdrLen), gratuitousARP(mac, n.conf.Addr.Addr().As4())...))
	}
}

// readdress moves the interface to a renewed lease's IPv4 address and
// gateway, if they changed.
func (n *nic) readdress(c NetConfig) error {
	old := n.conf
	n.conf = c
	if c.Addr == old.Addr && c.Gateway == old.Gateway {
		return nil
	}
	st := n.s.stack
	if old.Addr.IsValid() {
		st.RemoveAddress(ethNIC, tcpip.AddrFrom4(old.Addr.Addr().As4()))
	}
	var routes []tcpip.Route
	for _, r := range st.GetRouteTable() {
		if r.NIC == ethNIC && r.Destination.ID().Len() == header.IPv4AddressSize {
			continue // the lease's routes replace them
		}
		routes = append(routes, r)
	}
	routes, err := addIPv4(st, c, routes)
	if err != nil {
		return err
	}
	st.SetRouteTable(routes)
	return nil
}

// gratuitousARP is an ARP request for ip from ip at mac, broadcast (RFC
// 5227's announcement): hosts that cache ip update its MAC.
func gratuitousARP(mac tcpip.LinkAddress, ip [4]byte) []byte {
	b := make([]byte, 60) // the Ethernet minimum: header, ARP, padding
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: mac, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber,
	})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), mac)
	copy(a.ProtocolAddressSender(), ip[:])
	copy(a.ProtocolAddressTarget(), ip[:])
	return b
}
