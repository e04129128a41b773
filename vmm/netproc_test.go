package vmm

import (
	"bytes"
	"encoding/binary"
	"net"
	"os/exec"
	"path/filepath"
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
