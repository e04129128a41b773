package vmm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/vmm/crash"
	"golang.org/x/sys/unix"
)

// The debug device's page is mapped identity and uncached for the guest,
// and nothing else of its GiB is.
func TestMMIOPageMapped(t *testing.T) {
	m := &GuestMemory{mem: make([]byte, 128<<20)}
	if err := writeTables(m); err != nil {
		t.Fatal(err)
	}
	if err := mapMMIOPage(m, boot.DebugDevPA); err != nil {
		t.Fatal(err)
	}
	if pa, err := crash.PageWalk(m, boot.PML4PA, boot.DebugDevPA+boot.DebugDevDoorbell); err != nil || pa != boot.DebugDevPA+boot.DebugDevDoorbell {
		t.Errorf("doorbell -> %#x, %v; want identity", pa, err)
	}
	for _, va := range []uint64{boot.DebugDevPA - 1, boot.DebugDevPA + 2<<20, 3 << 30} {
		if pa, err := crash.PageWalk(m, boot.PML4PA, va); err == nil {
			t.Errorf("%#x is mapped (to %#x)", va, pa)
		}
	}
	if err := mapMMIOPage(m, 64<<20); err == nil {
		t.Error("a window inside RAM was mapped")
	}
}

// runDebugDev boots testdata/debugdev with the device and returns its
// output.
func runDebugDev(t testing.TB, n int) string {
	img, err := OpenImage(testImage(t, "testdata/debugdev"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var out, errOut bytes.Buffer
	vm, err := New(Config{Image: img, DebugDevice: true, Args: []string{"-n", strconv.Itoa(n)}, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	status, err := vm.Run()
	if err != nil || status != 0 {
		t.Fatalf("status %d, err %v\nstdout:\n%s\nstderr:\n%s", status, err, out.String(), errOut.String())
	}
	return out.String()
}

var (
	debugDevCounts = regexp.MustCompile(`debugdev: vector (0x[0-9a-f]+), (\d+) doorbells, (\d+) served, (\d+) interrupts`)
	doorbellNs     = regexp.MustCompile(`doorbell->interrupt round trip: median (\d+) ns`)
	hypercallNs    = regexp.MustCompile(`port-I/O hypercall round trip: median (\d+) ns`)
)

// A guest program rings the debug device's doorbell (ioeventfd) and waits
// for its interrupt (irqfd, MSI route, the kernel's IRQ table) each time:
// every ring is served once and answered with one interrupt of the
// device's vector.
func TestDebugDevice(t *testing.T) {
	needKVM(t)
	const n = 200
	out := runDebugDev(t, n)
	m := debugDevCounts.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counts in the output:\n%s", out)
	}
	want := []string{fmt.Sprintf("%#x", boot.DebugDevIRQ), strconv.Itoa(n), strconv.Itoa(n), strconv.Itoa(n)}
	for i, w := range want {
		if m[i+1] != w {
			t.Errorf("vector, doorbells, served, interrupts = %v, want %v", m[1:], want)
			break
		}
	}
	t.Log(out)
}

// BenchmarkDeviceRoundTrip reports the guest's medians of the two round
// trips, measured in the same run: guest doorbell -> device goroutine ->
// interrupt -> guest, and the port-I/O hypercall.
func BenchmarkDeviceRoundTrip(b *testing.B) {
	needKVM(b)
	out := runDebugDev(b, 2000)
	for _, f := range []struct {
		re   *regexp.Regexp
		unit string
	}{{doorbellNs, "doorbell-irq-ns"}, {hypercallNs, "hypercall-ns"}} {
		m := f.re.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no %s in the output:\n%s", f.unit, out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		b.ReportMetric(v, f.unit)
	}
	b.ReportMetric(0, "ns/op")
}

// A vCPU's state reads back what the guest programmed (the kernel enables
// its LAPIC with spurious vector 0xff), and loads into the vCPU again: a
// vCPU whose state was restored after its registers were clobbered boots
// as if nothing happened.
func TestVCPUStateRoundTrip(t *testing.T) {
	needKVM(t)
	img, err := OpenImage(testImage(t, "../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var out bytes.Buffer
	vm, err := New(Config{Image: img, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	s, err := vm.vcpu.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if s.Regs.RIP != img.Entry || s.Sregs.CR3 != boot.PML4PA || s.XCRS.NrXCRS < 1 || s.XCRS.XCRs[0].Value != boot.XCR0 {
		t.Fatalf("saved state: RIP %#x CR3 %#x XCRs %d %#x", s.Regs.RIP, s.Sregs.CR3, s.XCRS.NrXCRS, s.XCRS.XCRs[0].Value)
	}
	r := s.Regs
	r.RIP, r.RSP = 0, 0
	if err := vm.vcpu.SetRegs(&r); err != nil {
		t.Fatal(err)
	}
	if err := vm.vcpu.RestoreState(s); err != nil {
		t.Fatal(err)
	}
	status, err := vm.Run()
	if err != nil || status != 0 || out.Len() == 0 {
		t.Fatalf("after restore: status %d, err %v, output %q", status, err, out.String())
	}
	after, err := vm.vcpu.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if svr := uint32(after.LAPIC.Regs[0xf0]) | uint32(after.LAPIC.Regs[0xf1])<<8; svr&0x1ff != 0x1ff {
		t.Errorf("LAPIC SVR %#x after the guest ran, want enabled with vector 0xff", svr)
	}
}

// KVM logs the guest's writes to its RAM once asked to, and each read of
// the log starts a new one. Its stack and data are written while it
// runs; nothing is written after it ended.
func TestDirtyLog(t *testing.T) {
	needKVM(t)
	img, err := OpenImage(testImage(t, "../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	vm, err := New(Config{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.LogDirtyPages(); err != nil {
		t.Fatal(err)
	}
	if status, err := vm.Run(); err != nil || status != 0 {
		t.Fatalf("status %d, err %v", status, err)
	}
	count := func() (n int) {
		b, err := vm.DirtyPages()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range b {
			n += bits.OnesCount64(w)
		}
		return n
	}
	first, second := count(), count()
	if first == 0 || second != 0 {
		t.Errorf("dirty pages: %d during the run, %d after the first read; want some, then none", first, second)
	}
	t.Logf("%d pages dirtied by hello", first)
	if s := vm.DeviceStates(); s["pio/uart"] != (uartState{}) {
		t.Errorf("device states %v", s)
	}
}

// The debug device without KVM: its doorbell and interrupt are plain
// eventfds. A doorbell write that reaches the device (an MMIO exit, as
// when no ioeventfd took it) wakes its goroutine, which counts it and
// raises the interrupt, which ends an idle wait.
func TestDebugDeviceServes(t *testing.T) {
	bellFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bellFd)
	irqFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(irqFd)
	woken := make(chan struct{}, 16)
	irq := &Interrupt{Vector: boot.DebugDevIRQ, fd: irqFd, wake: func() { woken <- struct{}{} }}
	d := newDebugDevice(&doorbell{fd: bellFd}, irq)
	defer d.close()
	reg := func(off uint64) uint32 {
		b := make([]byte, 4)
		d.Read(off, b)
		return binary.LittleEndian.Uint32(b)
	}
	if reg(boot.DebugDevID) != boot.DebugDevMagic || reg(boot.DebugDevVector) != boot.DebugDevIRQ {
		t.Fatalf("ID %#x, vector %#x", reg(boot.DebugDevID), reg(boot.DebugDevVector))
	}
	for i := 1; i <= 3; i++ {
		d.Write(boot.DebugDevDoorbell, []byte{1, 0, 0, 0})
		<-woken
		var b [8]byte
		if _, err := unix.Read(irqFd, b[:]); err != nil || binary.LittleEndian.Uint64(b[:]) != 1 {
			t.Fatalf("ring %d: interrupt eventfd %v, %v", i, b, err)
		}
		if got := reg(boot.DebugDevServed); got != uint32(i) {
			t.Fatalf("served %d after %d rings", got, i)
		}
	}
	if s := d.SaveState(); s != (debugDevState{Served: 3}) {
		t.Errorf("state %+v", s)
	}
}

// Device interrupts from two sources at once while the guest makes
// system calls: the debug device's goroutine raises whenever it is rung,
// wherever the vCPU is, and the kernel's echo vector lands between a
// handler's EOI and its IRETQ (tests/guest's TestDeviceInterruptsNest
// runs the echo alone on every accelerator).
func TestDeviceInterruptStorm(t *testing.T) {
	needKVM(t)
	img, err := OpenImage(testImage(t, "../tests/guest/testdata/irqstorm"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var out, errOut bytes.Buffer
	vm, err := New(Config{Image: img, DebugDevice: true, Args: []string{"-n", "5000", "-debugdev"}, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	status, err := vm.Run()
	if err != nil || status != 0 || !strings.Contains(out.String(), "irqstorm ok") {
		t.Fatalf("status %d, err %v\nstdout:\n%s\nstderr:\n%s", status, err, out.String(), errOut.String())
	}
	t.Log(out.String())
}
