package vmm

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/amberos/amber/boot"
	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// recorder is a device that logs its accesses and reads back a pattern.
type recorder struct {
	log []string
}

func (r *recorder) Read(off uint64, data []byte) {
	r.log = append(r.log, "r"+string(rune('0'+off))+string(rune('0'+len(data))))
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.log = append(r.log, "w"+string(rune('0'+off))+string(data))
}

func TestBusDispatch(t *testing.T) {
	var b Bus
	a, c := &recorder{}, &recorder{}
	if err := b.Add("a", 0x100, 8, a); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("c", 0x10, 4, c); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.Devices(), ","); got != "c,a" {
		t.Errorf("devices %s, want in address order c,a", got)
	}
	buf := make([]byte, 2)
	if !b.Read(0x104, buf) || buf[0] != 4 || buf[1] != 5 {
		t.Errorf("read at a+4: %v", buf)
	}
	if !b.Write(0x12, []byte("xy")) {
		t.Error("write at c+2 not taken")
	}
	if !b.Write(0x107, []byte("z")) {
		t.Error("write at a's last byte not taken")
	}
	if got := strings.Join(a.log, " "); got != "r42 w7z" {
		t.Errorf("a saw %q", got)
	}
	if got := strings.Join(c.log, " "); got != "w2xy" {
		t.Errorf("c saw %q", got)
	}
}

// Accesses nobody holds whole: before, between and after the devices,
// and ones that run off a device's end. Reads give all ones, writes are
// dropped, and the devices see nothing.
func TestBusOutOfRange(t *testing.T) {
	var b Bus
	d := &recorder{}
	if err := b.Add("d", 0x100, 8, d); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		addr uint64
		n    int
	}{{0xff, 1}, {0xfe, 4}, {0x108, 1}, {0x106, 4}, {0x107, 2}, {0, 8}, {^uint64(0), 1}, {^uint64(0) - 1, 8}} {
		buf := bytes.Repeat([]byte{0x5a}, a.n)
		if b.Read(a.addr, buf) {
			t.Errorf("read of %d at %#x answered", a.n, a.addr)
		}
		if !bytes.Equal(buf, bytes.Repeat([]byte{0xff}, a.n)) {
			t.Errorf("read of %d at %#x gave % x, want all ones", a.n, a.addr, buf)
		}
		if b.Write(a.addr, buf) {
			t.Errorf("write of %d at %#x taken", a.n, a.addr)
		}
	}
	if len(d.log) != 0 {
		t.Errorf("device saw %v", d.log)
	}
	// Port string I/O repeats one port: only the first byte must be in
	// the device.
	if !b.access(0x107, 1, make([]byte, 16), true) {
		t.Error("REP OUTSB at the device's last port not taken")
	}
}

func TestBusRejectsOverlaps(t *testing.T) {
	var b Bus
	if err := b.Add("base", 0x100, 0x10, &recorder{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ base, size uint64 }{
		{0x100, 0x10}, {0xf8, 0x10}, {0x10f, 1}, {0x108, 0x100}, {0, 0x1000}, {0x104, 4},
	} {
		if err := b.Add("x", r.base, r.size, &recorder{}); err == nil || !strings.Contains(err.Error(), "overlaps base") {
			t.Errorf("Add(%#x+%#x) = %v, want an overlap error", r.base, r.size, err)
		}
	}
	for _, r := range []struct{ base, size uint64 }{{0x200, 0}, {^uint64(0) - 1, 4}} {
		if err := b.Add("x", r.base, r.size, &recorder{}); err == nil || !strings.Contains(err.Error(), "bad range") {
			t.Errorf("Add(%#x+%#x) = %v, want a range error", r.base, r.size, err)
		}
	}
	// Neighbours touching the range on either side are fine.
	if err := b.Add("below", 0xf0, 0x10, &recorder{}); err != nil {
		t.Error(err)
	}
	if err := b.Add("above", 0x110, 0x10, &recorder{}); err != nil {
		t.Error(err)
	}
	if got := strings.Join(b.Devices(), ","); got != "below,base,above" {
		t.Errorf("devices %s", got)
	}
}

// ioStep adds a port-I/O exit to the fake guest; the data lives in the
// run area.
func (g *fakeGuest) ioStep(port uint16, out bool, data []byte) {
	g.steps = append(g.steps, func() unix.Errno {
		dir := uint64(0)
		if out {
			dir = 1
		}
		r := g.vm.vcpu.run
		r.ExitReason = uint32(kvm.EXITIO)
		r.Data[0] = dir | uint64(len(data))<<8 | uint64(port)<<16 | 1<<32
		r.Data[1] = fakeIOOff
		copy(g.vm.vcpu.runMap[fakeIOOff:], data)
		return 0
	})
}

// mmioStep adds an MMIO exit of data at addr.
func (g *fakeGuest) mmioStep(addr uint64, out bool, data []byte) {
	g.steps = append(g.steps, func() unix.Errno {
		r := g.vm.vcpu.run
		r.ExitReason = uint32(kvm.EXITMMIO)
		r.Data[0] = addr
		r.Data[1] = 0
		d := g.vm.vcpu.mmioBytes()
		copy(d[8:16], data)
		binary.LittleEndian.PutUint32(d[16:], uint32(len(data)))
		if out {
			d[20] = 1
		} else {
			d[20] = 0
		}
		return 0
	})
}

// The exits reach the devices on the buses: the UART's transmit register
// writes to Stdout, its scratch register keeps a byte, an MMIO device
// answers at its offset, unclaimed MMIO reads give all ones, and the
// debug-exit port ends the run with its byte.
func TestExitsReachDevices(t *testing.T) {
	var out bytes.Buffer
	g := newFakeGuest(t, Config{Stdout: &out})
	dev := &recorder{}
	if err := g.vm.mmioBus.Add("rec", 0xd000_0000, 0x100, dev); err != nil {
		t.Fatal(err)
	}
	g.ioStep(com1, true, []byte("h"))
	g.ioStep(com1, true, []byte("i"))
	g.ioStep(com1+7, true, []byte{0x42})
	g.ioStep(com1+7, false, []byte{0})
	var scratch, unclaimed, devRead []byte
	g.steps = append(g.steps, func() unix.Errno {
		scratch = append(scratch, g.vm.vcpu.runMap[fakeIOOff])
		return unix.EINTR
	})
	g.mmioStep(0xd000_0004, true, []byte("abcd"))
	g.mmioStep(0xd000_0010, false, make([]byte, 4))
	g.steps = append(g.steps, func() unix.Errno { // the data of the read before
		devRead = append([]byte(nil), g.vm.vcpu.mmioBytes()[8:12]...)
		return unix.EINTR
	})
	g.mmioStep(0xe000_0000, false, make([]byte, 8))
	g.steps = append(g.steps, func() unix.Errno {
		unclaimed = append([]byte(nil), g.vm.vcpu.mmioBytes()[8:16]...)
		return unix.EINTR
	})
	g.ioStep(debugExitPort, true, []byte{9})
	status, err := g.vm.loop()
	if err != nil || status != 9 {
		t.Fatalf("status %d, err %v; want 9 from the debug-exit port", status, err)
	}
	if out.String() != "hi" {
		t.Errorf("UART output %q, want hi", out.String())
	}
	if !bytes.Equal(scratch, []byte{0x42}) {
		t.Errorf("UART scratch register read % x, want 42", scratch)
	}
	if strings.Join(dev.log, " ") != "w4abcd r@4" || !bytes.Equal(devRead, []byte{0x10, 0x11, 0x12, 0x13}) {
		t.Errorf("MMIO device saw %v, read gave % x", dev.log, devRead)
	}
	if !bytes.Equal(unclaimed, bytes.Repeat([]byte{0xff}, 8)) {
		t.Errorf("unclaimed MMIO read gave % x", unclaimed)
	}
}

// The UART's scratch register holds what was written (its state is the
// device's own, not the VM's).
func TestUARTState(t *testing.T) {
	var out bytes.Buffer
	u := newUART(&out, newInputPump(strings.NewReader("q")))
	u.Write(7, []byte{0x42})
	u.Write(3, []byte{0x80}) // DLAB
	u.Write(0, []byte{0x0c}) // divisor, not transmit
	b := []byte{0}
	u.Read(7, b)
	if b[0] != 0x42 {
		t.Errorf("scratch reads %#x", b[0])
	}
	s := u.SaveState()
	v := newUART(&out, newInputPump(nil))
	if err := v.RestoreState(s); err != nil {
		t.Fatal(err)
	}
	if v.uartState != (uartState{LCR: 0x80, DLL: 0x0c, Scratch: 0x42}) {
		t.Errorf("restored %+v", v.uartState)
	}
	if err := v.RestoreState(42); err == nil {
		t.Error("RestoreState took an int")
	}
	if out.Len() != 0 {
		t.Errorf("divisor write was transmitted: %q", out.String())
	}
}

// Hypercall numbers without a handler, inside or beyond the table, return
// ENOSYS; every number boot defines has one.
func TestHypercallTable(t *testing.T) {
	for nr := boot.HCExit; nr <= boot.HCMark; nr++ {
		if nr >= len(hypercalls) || hypercalls[nr] == nil {
			t.Errorf("hypercall %d has no handler", nr)
		}
	}
	g := newFakeGuest(t, Config{})
	var rets []int64
	for _, nr := range []uint64{0, uint64(len(hypercalls)), 1 << 40} {
		g.hypercall(nr, 0, 0, 0)
		g.interrupted(unix.EINTR, func() { rets = append(rets, g.ret()) })
	}
	g.hypercall(boot.HCConsoleWrite, 1, 1<<30, 4) // outside guest memory
	g.interrupted(unix.EINTR, func() { rets = append(rets, g.ret()) })
	g.hypercall(boot.HCExit, 3, 0, 0)
	status, err := g.vm.loop()
	if err != nil || status != 3 {
		t.Fatalf("status %d, err %v", status, err)
	}
	want := []int64{errNoSys, errNoSys, errNoSys, errFault}
	if len(rets) != len(want) {
		t.Fatalf("rets %v, want %v", rets, want)
	}
	for i := range want {
		if rets[i] != want[i] {
			t.Errorf("rets %v, want %v", rets, want)
			break
		}
	}
	if e := g.vm.Exits(); e["hc0"] != 1 || e["hc1"] != 1 || e["hc2"] != 1 {
		t.Errorf("exits %v", e)
	}
}

// The run area's offset and sizes come from KVM, but are checked anyway:
// an I/O exit whose data would lie outside the run area gives no data,
// and an MMIO exit's length is capped at its 8-byte buffer.
func TestExitDataBounds(t *testing.T) {
	g := newFakeGuest(t, Config{})
	c := g.vm.vcpu
	r := c.run
	r.Data[0] = 1 | 4<<8 | 0x510<<16 | 1<<32
	for _, off := range []uint64{uint64(len(c.runMap)) - 3, uint64(len(c.runMap)) + 1, ^uint64(0) - 1} {
		r.Data[1] = off
		if _, _, _, data := c.ioData(); data != nil {
			t.Errorf("offset %#x: %d bytes of data", off, len(data))
		}
	}
	r.Data[0] = 1 | 4<<8 | 0x510<<16 | 0x40000000<<32 // a count that overflows
	r.Data[1] = 8
	if _, _, _, data := c.ioData(); data != nil {
		t.Errorf("count 2^30: %d bytes of data", len(data))
	}
	d := c.mmioBytes()
	binary.LittleEndian.PutUint32(d[16:], 4096)
	if _, _, data := c.mmioData(); len(data) != 8 {
		t.Errorf("MMIO length 4096 gave %d bytes", len(data))
	}
}
