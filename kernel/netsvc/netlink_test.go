package netsvc

import (
	"encoding/binary"
	"syscall"
	"testing"
	"unsafe"
)

// The dumps parse with Go's own netlink parser (what net.Interfaces
// runs) and describe the loopback interface as Linux does.
func TestNetlinkDumps(t *testing.T) {
	st, err := NewStack()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k := &sock{s: &Service{stack: st}, family: syscall.AF_NETLINK, nl: &nlSock{portID: 77}}
	req := func(typ uint16) []byte {
		b := make([]byte, nlmsgHdrLen+1)
		binary.LittleEndian.PutUint32(b, uint32(len(b)))
		binary.LittleEndian.PutUint16(b[4:], typ)
		binary.LittleEndian.PutUint16(b[6:], syscall.NLM_F_DUMP|syscall.NLM_F_REQUEST)
		binary.LittleEndian.PutUint32(b[8:], 1)
		return b
	}
	parse := func(typ uint16) []syscall.NetlinkMessage {
		var all []syscall.NetlinkMessage
		dgrams := k.nlAnswer(req(typ))
		for i, d := range dgrams {
			msgs, err := syscall.ParseNetlinkMessage(d)
			if err != nil {
				t.Fatalf("type %d: datagram %d: %v", typ, i, err)
			}
			for _, m := range msgs {
				if m.Header.Seq != 1 || m.Header.Pid != 77 {
					t.Errorf("type %d: seq %d pid %d, want 1 and 77", typ, m.Header.Seq, m.Header.Pid)
				}
			}
			all = append(all, msgs...)
		}
		if len(all) == 0 || all[len(all)-1].Header.Type != syscall.NLMSG_DONE {
			t.Fatalf("type %d: %d messages, the last not NLMSG_DONE", typ, len(all))
		}
		return all[:len(all)-1]
	}
	links := parse(syscall.RTM_GETLINK)
	if len(links) != 1 || links[0].Header.Type != syscall.RTM_NEWLINK {
		t.Fatalf("links: %+v, want one RTM_NEWLINK", links)
	}
	ifi := (*syscall.IfInfomsg)(unsafe.Pointer(&links[0].Data[0]))
	if ifi.Index != loopNIC || ifi.Flags&syscall.IFF_LOOPBACK == 0 || ifi.Flags&syscall.IFF_UP == 0 {
		t.Errorf("loopback: %+v", ifi)
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&links[0])
	if err != nil {
		t.Fatal(err)
	}
	name := ""
	for _, a := range attrs {
		if a.Attr.Type == syscall.IFLA_IFNAME {
			name = string(a.Value[:len(a.Value)-1])
		}
	}
	if name != "lo" {
		t.Errorf("loopback's name %q, want lo", name)
	}
	addrs := parse(syscall.RTM_GETADDR)
	got := map[string]uint8{}
	for _, m := range addrs {
		ifa := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFA_ADDRESS {
				got[string(a.Value)] = ifa.Prefixlen
			}
		}
	}
	if got[string([]byte{127, 0, 0, 1})] != 8 || got[string(append(make([]byte, 15), 1))] != 128 || len(got) != 2 {
		t.Errorf("addresses %v, want 127.0.0.1/8 and ::1/128", got)
	}
	// Anything else is an error message, not a dump.
	dg := k.nlAnswer(req(syscall.RTM_GETROUTE))
	msgs, err := syscall.ParseNetlinkMessage(dg[0])
	if err != nil || len(msgs) != 1 || msgs[0].Header.Type != syscall.NLMSG_ERROR {
		t.Errorf("RTM_GETROUTE: %+v, %v; want one NLMSG_ERROR", msgs, err)
	}
}
