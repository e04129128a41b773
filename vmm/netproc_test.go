package vmm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// buildNetHelper builds tools/vmmnet for StartUserNet.
func buildNetHelper(t *testing.T) {
	t.Helper()
	p := filepath.Join(t.TempDir(), NetHelper)
	if out, err := exec.Command("go", "build", "-o", p, "../tools/vmmnet").CombinedOutput(); err != nil {
		t.Fatalf("building vmm-net: %v\n%s", err, out)
	}
	old := netHelperPath
	netHelperPath = p
	t.Cleanup(func() { netHelperPath = old })
}

// StartUserNet runs vmm-net: an ARP request for the gateway crosses the
// socket pair and is answered; a forward that cannot listen fails the
// start with vmm-net's message; Close ends the process and a Recv.
func TestStartUserNet(t *testing.T) {
	buildNetHelper(t)
	if _, err := StartUserNet(testMAC, []HostFwd{{HostAddr: "192.0.2.1", HostPort: 8080, GuestPort: 80}}); err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("forward on an address this host lacks: %v", err)
	}
	// Started without the wait: the backend comes at once, the failure
	// through ready, and the backend is closed then.
	abe, ready, err := StartUserNetAsync(testMAC, []HostFwd{{HostAddr: "192.0.2.1", HostPort: 8080, GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ready(); err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("ready of a forward on an address this host lacks: %v", err)
	}
	if _, err := abe.Recv(make([]byte, 2048)); err == nil {
		t.Error("Recv on a network that failed to start returned a frame")
	}
	be, err := StartUserNet(testMAC, []HostFwd{{HostAddr: "127.0.0.1", HostPort: freePort(t), GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	// An ARP request for 10.0.2.2 (Ethernet broadcast; ARP, who-has).
	arp := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	arp = append(arp, testMAC...)
	arp = append(arp, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	arp = append(arp, testMAC...)
	arp = append(arp, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2)
	if err := be.Send(arp); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, be.MTU()+netMaxFrameOverhead)
		for {
			n, err := be.Recv(buf)
			if err != nil {
				close(got)
				return
			}
			f := buf[:n]
			if n >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 {
				got <- bytes.Clone(f)
			}
		}
	}()
	select {
	case f := <-got:
		if !bytes.Equal(f[0:6], testMAC) || !bytes.Equal(f[28:32], []byte{10, 0, 2, 2}) {
			t.Errorf("ARP reply % x", f)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no ARP reply from vmm-net")
	}
	be.Close()
	if _, ok := <-got; ok {
		t.Error("Recv did not end with Close")
	}
	if s := be.(*sockNet).cmd.ProcessState; s == nil {
		t.Error("vmm-net still running after Close")
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The device and the user-mode network together, as vmm run --net user
// wires them, with the test as the guest's driver: an ARP request for the
// gateway goes out through the transmit queue and the answer comes back
// into a receive buffer, marked DATA_VALID.
func TestVirtioNetUserNet(t *testing.T) {
	buildNetHelper(t)
	be, err := StartUserNet(testMAC, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := newNetGuest(t)
	d, err := newNetDevice(be, testMAC)
	if err != nil {
		t.Fatal(err)
	}
	g.dev = d
	g.tr = newVirtioMMIO(g.mem, d, func() {})
	d.t = g.tr
	irq := make(chan struct{}, 100)
	g.tr.raise = func() { irq <- struct{}{} }
	bells := [2]*doorbell{}
	for i := range bells {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		bells[i] = &doorbell{fd: fd}
	}
	g.tr.kickQueue = func(q int) { bells[q].ring() }
	r := &netRunner{d: d, rxBell: bells[0], txBell: bells[1]}
	r.start()
	defer r.close()
	if !g.start(ngFeatures | netFMrgRxbuf) {
		t.Fatal("handshake")
	}
	if d.mtu != UserNetMTU || g.r32(vioConfig+8)>>16 != UserNetMTU {
		t.Errorf("MTU %d, config %d", d.mtu, g.r32(vioConfig+8)>>16)
	}
	g.postRx(ngBuf, 4, 2048)
	g.w32(vioQueueNotify, netRxQueue)
	arp := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	arp = append(arp, testMAC...)
	arp = append(arp, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	arp = append(arp, testMAC...)
	arp = append(arp, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2)
	g.transmit(ngBuf+0x8000, [netHdrSize]byte{}, arp)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-irq:
		case <-deadline:
			t.Fatal("no ARP reply in the receive queue")
		}
		g.w32(vioInterruptACK, vioIntUsedBuffer)
		for _, u := range g.usedEntries(netRxQueue) {
			buf := g.mem.mem[ngBuf+2048*uint64(u[0]):][:u[1]]
			f := buf[netHdrSize:]
			if len(f) >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 {
				if buf[0] != netHdrFDataValid || binary.LittleEndian.Uint16(buf[10:]) != 1 || !bytes.Equal(f[28:32], []byte{10, 0, 2, 2}) {
					t.Errorf("reply: header % x frame % x", buf[:netHdrSize], f[:42])
				}
				return
			}
		}
	}
}

// A host port 0 is one the kernel chooses: vmm-net listens there and
// reports it (UserNetForwards), each such forward on a port of its own;
// a given port is reported as given.
func TestStartUserNetChosenPorts(t *testing.T) {
	buildNetHelper(t)
	given := freePort(t)
	be, err := StartUserNet(testMAC, []HostFwd{
		{HostAddr: "127.0.0.1", HostPort: 0, GuestPort: 80},
		{HostAddr: "127.0.0.1", HostPort: 0, GuestPort: 81},
		{HostAddr: "127.0.0.1", HostPort: given, GuestPort: 82},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	fs := UserNetForwards(be)
	if len(fs) != 3 || fs[0].HostPort == 0 || fs[1].HostPort == 0 || fs[0].HostPort == fs[1].HostPort || fs[2].HostPort != given ||
		fs[0].GuestPort != 80 || fs[1].GuestPort != 81 || fs[2].GuestPort != 82 {
		t.Fatalf("forwards %v: want two chosen ports and %d", fs, given)
	}
	for _, f := range fs {
		// The port is vmm-net's: nothing else can listen there.
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(f.HostPort))); err == nil {
			ln.Close()
			t.Errorf("forward %v: its host port is free", f)
		}
	}
	if UserNetForwards(nil) != nil {
		t.Error("UserNetForwards of another backend")
	}
}

// The network device of a restored VM: a plain restore keeps the
// snapshot's MAC and host ports; a clone gets a fresh MAC and chosen
// ports; --net (NetSpec) replaces the backend, a given Net is used as
// it is, each with the snapshot's MAC (a fresh one for a clone) unless
// they name one.
func TestRestoreNet(t *testing.T) {
	buildNetHelper(t)
	snapMAC := "52:54:00:12:34:56"
	port := freePort(t)
	rec := &netRecord{MAC: snapMAC, User: true, Forwards: []HostFwd{{HostAddr: "127.0.0.1", HostPort: port, GuestPort: 80}}}
	open := func(rc *RestoreConfig, clone bool) *Net {
		t.Helper()
		n, err := rec.open(rc, clone)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Backend.Close() })
		if n.Spec != nil && !bytes.Equal(n.MAC, n.Spec.MAC) {
			t.Errorf("MAC %v, the spec's %v", n.MAC, n.Spec.MAC)
		}
		return n
	}
	n := open(&RestoreConfig{}, false)
	if n.MAC.String() != snapMAC || len(n.Spec.Forwards) != 1 || n.Spec.Forwards[0].HostPort != port {
		t.Errorf("plain restore: MAC %v, forwards %v; want the snapshot's", n.MAC, n.Spec.Forwards)
	}
	n.Backend.Close()
	c1, c2 := open(&RestoreConfig{}, true), open(&RestoreConfig{}, true)
	for _, c := range []*Net{c1, c2} {
		if c.MAC.String() == snapMAC || len(c.Spec.Forwards) != 1 || c.Spec.Forwards[0].HostPort == 0 || c.Spec.Forwards[0].HostPort == port || c.Spec.Forwards[0].GuestPort != 80 {
			t.Errorf("clone: MAC %v, forwards %v; want a fresh MAC and a chosen port", c.MAC, c.Spec.Forwards)
		}
	}
	if bytes.Equal(c1.MAC, c2.MAC) || c1.Spec.Forwards[0].HostPort == c2.Spec.Forwards[0].HostPort {
		t.Errorf("two clones share MAC or port: %v %v, %v %v", c1.MAC, c1.Spec.Forwards, c2.MAC, c2.Spec.Forwards)
	}
	other := freePort(t)
	ns, err := ParseNetSpec(fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:8080", other))
	if err != nil {
		t.Fatal(err)
	}
	n = open(&RestoreConfig{NetSpec: &ns}, false)
	if n.MAC.String() != snapMAC || len(n.Spec.Forwards) != 1 || n.Spec.Forwards[0].HostPort != other || n.Spec.Forwards[0].GuestPort != 8080 {
		t.Errorf("--net: MAC %v, forwards %v; want the snapshot's MAC and the given forward", n.MAC, n.Spec.Forwards)
	}
	n.Backend.Close()
	ns.MAC = net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	if n = open(&RestoreConfig{NetSpec: &ns}, true); !bytes.Equal(n.MAC, ns.MAC) {
		t.Errorf("--net with mac=: MAC %v, want %v", n.MAC, ns.MAC)
	}
	n.Backend.Close()
	given := &Net{Backend: nopBackend{}}
	if n := open(&RestoreConfig{Net: given}, false); n.Backend != given.Backend || n.MAC.String() != snapMAC {
		t.Errorf("given backend: MAC %v", n.MAC)
	}
	if n := open(&RestoreConfig{Net: given}, true); n.MAC.String() == snapMAC {
		t.Errorf("given backend for a clone: the snapshot's MAC %v", n.MAC)
	}
	bad := &netRecord{MAC: snapMAC, User: true, Forwards: []HostFwd{{HostAddr: "192.0.2.1", HostPort: port, GuestPort: 80}}}
	if _, err := bad.open(&RestoreConfig{}, false); err == nil || !strings.Contains(err.Error(), "192.0.2.1") || !strings.Contains(err.Error(), "--net gives another") {
		t.Errorf("the recorded backend failing: %v", err)
	}
	if _, err := (&netRecord{MAC: snapMAC, Unknown: true}).open(&RestoreConfig{}, false); err == nil || !strings.Contains(err.Error(), "--net") {
		t.Errorf("a backend the snapshot does not describe: %v", err)
	}
}

type nopBackend struct{}

func (nopBackend) Send([]byte) error        { return nil }
func (nopBackend) Recv([]byte) (int, error) { return 0, errNetClosed }
func (nopBackend) MTU() int                 { return 1500 }
func (nopBackend) Verified() bool           { return false }
func (nopBackend) Close() error             { return nil }

func TestNoHugeHeapEnv(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"A=1"}, []string{"A=1", "GODEBUG=disablethp=1"}},
		{[]string{"GODEBUG="}, []string{"GODEBUG=disablethp=1"}},
		{[]string{"GODEBUG=gctrace=1", "B=2"}, []string{"GODEBUG=gctrace=1,disablethp=1", "B=2"}},
		{[]string{"GODEBUG=disablethp=0"}, []string{"GODEBUG=disablethp=0"}}, // the user's choice stands
		{[]string{"GODEBUG=x=1,disablethp=0"}, []string{"GODEBUG=x=1,disablethp=0"}},
	} {
		if got := noHugeHeapEnv(c.in); !slices.Equal(got, c.want) {
			t.Errorf("noHugeHeapEnv(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
