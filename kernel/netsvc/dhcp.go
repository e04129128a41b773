package netsvc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// DHCP (amber.ip=dhcp): DISCOVER, OFFER, REQUEST, ACK over a gVisor UDP
// endpoint on the interface, the messages built and parsed by
// github.com/insomniacslk/dhcp/dhcpv4. Until an address is leased the
// interface holds 0.0.0.0 (the only IPv4 source it has then) and a
// route for the broadcast address. The lease is not renewed while the VM
// runs (user-mode networks lease for a day or more, longer than a microVM
// lives), only asked for again after a restore (restore.go).

const (
	dhcpClientPort = 68
	dhcpServerPort = 67
	dhcpAttempts   = 4
)

// dhcp asks the network for an address, the gateway and DNS servers.
func dhcp(st *stack.Stack, mac tcpip.LinkAddress) (NetConfig, error) {
	zero := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: header.IPv4Any.WithPrefix()}
	if err := st.AddProtocolAddress(ethNIC, zero, stack.AddressProperties{PEB: stack.CanBePrimaryEndpoint}); err != nil {
		return NetConfig{}, fmt.Errorf("0.0.0.0 on the interface: %v", err)
	}
	defer st.RemoveAddress(ethNIC, header.IPv4Any)
	routes := st.GetRouteTable()
	st.SetRouteTable(append(routes, tcpip.Route{Destination: header.IPv4Broadcast.WithPrefix().Subnet(), NIC: ethNIC}))
	defer st.SetRouteTable(routes)

	var wq waiter.Queue
	ep, terr := st.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return NetConfig{}, fmt.Errorf("UDP endpoint: %v", terr)
	}
	defer ep.Close()
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.SocketOptions().SetBindToDevice(ethNIC); terr != nil {
		return NetConfig{}, fmt.Errorf("binding to the interface: %v", terr)
	}
	if terr := ep.Bind(tcpip.FullAddress{Port: dhcpClientPort, NIC: ethNIC}); terr != nil {
		return NetConfig{}, fmt.Errorf("binding port %d: %v", dhcpClientPort, terr)
	}
	we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)

	send := func(m *dhcpv4.DHCPv4) error {
		to := tcpip.FullAddress{Addr: header.IPv4Broadcast, Port: dhcpServerPort, NIC: ethNIC}
		if _, terr := ep.Write(bytes.NewReader(m.ToBytes()), tcpip.WriteOptions{To: &to}); terr != nil {
			return fmt.Errorf("sending %v: %v", m.MessageType(), terr)
		}
		return nil
	}
	// recv waits for the server's answer to xid of type want; anything
	// else (other clients' traffic, malformed packets) is skipped.
	recv := func(xid dhcpv4.TransactionID, want dhcpv4.MessageType, wait time.Duration) (*dhcpv4.DHCPv4, error) {
		timeout := time.NewTimer(wait)
		defer timeout.Stop()
		for {
			var buf bytes.Buffer
			_, terr := ep.Read(&buf, tcpip.ReadOptions{})
			if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
				select {
				case <-ready:
					continue
				case <-timeout.C:
					return nil, fmt.Errorf("no %v within %v", want, wait)
				}
			}
			if terr != nil {
				return nil, fmt.Errorf("receiving: %v", terr)
			}
			m, err := dhcpv4.FromBytes(buf.Bytes())
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.TransactionID != xid {
				continue
			}
			if t := m.MessageType(); t == dhcpv4.MessageTypeNak {
				return nil, errors.New("the server refused (NAK)")
			} else if t != want {
				continue
			}
			return m, nil
		}
	}
	hw := net.HardwareAddr(mac)
	opts := dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer)
	var err error
	for i := 0; i < dhcpAttempts; i++ {
		wait := time.Second << i
		var disc, offer, req, ack *dhcpv4.DHCPv4
		if disc, err = dhcpv4.NewDiscovery(hw, dhcpv4.WithBroadcast(true), opts); err != nil {
			return NetConfig{}, err
		}
		if err = send(disc); err != nil {
			continue
		}
		if offer, err = recv(disc.TransactionID, dhcpv4.MessageTypeOffer, wait); err != nil {
			continue
		}
		if req, err = dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithBroadcast(true), opts); err != nil {
			return NetConfig{}, err
		}
		if err = send(req); err != nil {
			continue
		}
		if ack, err = recv(req.TransactionID, dhcpv4.MessageTypeAck, wait); err != nil {
			continue
		}
		return leaseConfig(ack)
	}
	return NetConfig{}, err
}

// leaseConfig reads the configuration from an ACK.
func leaseConfig(ack *dhcpv4.DHCPv4) (NetConfig, error) {
	var c NetConfig
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return c, fmt.Errorf("the ACK gives no address (%v)", ack.YourIPAddr)
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		if ones, size := m.Size(); size == 32 && ones > 0 {
			bits = ones
		}
	}
	c.Addr = netip.PrefixFrom(ip, bits)
	if r := ack.Router(); len(r) > 0 {
		if a, ok := netip.AddrFromSlice(r[0].To4()); ok {
			c.Gateway = a
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			c.DNS = append(c.DNS, a)
		}
	}
	return c, nil
}
