package netsvc

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// testNIC is an interface like startNIC's, on a channel endpoint,
// configured with c.
func testNIC(t *testing.T, mac tcpip.LinkAddress, c NetConfig) *nic {
	t.Helper()
	st, err := NewStack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	n := &nic{s: &Service{stack: st}, mac: mac, conf: c, up: make(chan struct{})}
	n.ch = channel.New(16, 1514, mac)
	if err := st.CreateNIC(ethNIC, ethernet.New(n.ch)); err != nil {
		t.Fatal(err)
	}
	ll := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: header.LinkLocalAddr(mac).WithPrefix()}
	if err := st.AddProtocolAddress(ethNIC, ll, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	if err := configure(st, c); err != nil {
		t.Fatal(err)
	}
	return n
}

func addrsOf(n *nic, proto tcpip.NetworkProtocolNumber) []tcpip.Address {
	var out []tcpip.Address
	for _, a := range n.s.stack.NICInfo()[ethNIC].ProtocolAddresses {
		if a.Protocol == proto {
			out = append(out, a.AddressWithPrefix.Address)
		}
	}
	return out
}

// A restored interface takes its new MAC: the link endpoint's (what ARP
// answers and frames carry, what netlink lists) and the IPv6 link-local
// address derived from it.
func TestRestoreSetMAC(t *testing.T) {
	old, mac := tcpip.LinkAddress("\x52\x54\x00\x12\x34\x56"), tcpip.LinkAddress("\x52\x54\x00\xab\xcd\xef")
	n := testNIC(t, old, NetConfig{Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2")})
	n.setMAC(mac)
	if got := n.s.stack.NICInfo()[ethNIC].LinkAddress; got != mac || n.mac != mac {
		t.Errorf("link address %v (nic %v), want %v", got, n.mac, mac)
	}
	v6 := addrsOf(n, ipv6.ProtocolNumber)
	if len(v6) != 1 || v6[0] != header.LinkLocalAddr(mac) {
		t.Errorf("IPv6 addresses %v, want only %v", v6, header.LinkLocalAddr(mac))
	}
	if v4 := addrsOf(n, ipv4.ProtocolNumber); len(v4) != 1 || v4[0] != tcpip.AddrFrom4([4]byte{10, 0, 2, 15}) {
		t.Errorf("IPv4 addresses %v, want 10.0.2.15 kept", v4)
	}
}

// A renewed lease with another address replaces the address and the
// IPv4 routes; the same lease changes nothing.
func TestRestoreReaddress(t *testing.T) {
	c := NetConfig{DHCP: true, Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2")}
	n := testNIC(t, "\x52\x54\x00\x12\x34\x56", c)
	if err := n.readdress(c); err != nil {
		t.Fatal(err)
	}
	routes := len(n.s.stack.GetRouteTable())
	c2 := NetConfig{DHCP: true, Addr: netip.MustParsePrefix("192.168.7.20/24"), Gateway: netip.MustParseAddr("192.168.7.1")}
	if err := n.readdress(c2); err != nil {
		t.Fatal(err)
	}
	if v4 := addrsOf(n, ipv4.ProtocolNumber); len(v4) != 1 || v4[0] != tcpip.AddrFrom4([4]byte{192, 168, 7, 20}) {
		t.Errorf("IPv4 addresses %v, want only 192.168.7.20", v4)
	}
	rt := n.s.stack.GetRouteTable()
	if len(rt) != routes {
		t.Errorf("%d routes after the new lease, %d before: %v", len(rt), routes, rt)
	}
	for _, r := range rt {
		if r.NIC == ethNIC && r.Destination.ID().Len() == 4 && r.Destination.Prefix() == 0 && r.Gateway != tcpip.AddrFrom4([4]byte{192, 168, 7, 1}) {
			t.Errorf("default route %v, want through 192.168.7.1", r)
		}
		if r.NIC == ethNIC && r.Destination.ID() == tcpip.AddrFrom4([4]byte{10, 0, 2, 0}) {
			t.Errorf("the old subnet's route %v is left", r)
		}
	}
}

func TestGratuitousARP(t *testing.T) {
	mac := tcpip.LinkAddress("\x52\x54\x00\xab\xcd\xef")
	b := gratuitousARP(mac, [4]byte{10, 0, 2, 15})
	e := header.Ethernet(b)
	if len(b) != 60 || e.DestinationAddress() != header.EthernetBroadcastAddress || e.SourceAddress() != mac || e.Type() != header.ARPProtocolNumber {
		t.Fatalf("Ethernet header % x", b[:14])
	}
	a := header.ARP(b[header.EthernetMinimumSize:])
	if !a.IsValid() || a.Op() != header.ARPRequest || tcpip.LinkAddress(a.HardwareAddressSender()) != mac ||
		tcpip.AddrFrom4Slice(a.ProtocolAddressSender()) != tcpip.AddrFrom4([4]byte{10, 0, 2, 15}) ||
		tcpip.AddrFrom4Slice(a.ProtocolAddressTarget()) != tcpip.AddrFrom4([4]byte{10, 0, 2, 15}) {
		t.Errorf("ARP % x", []byte(a))
	}
}
