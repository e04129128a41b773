package vmm

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Device state goes through JSON (the snapshot's devices object) and
// back into devices of a new VM: a virtio-blk transport with a request
// made available before the snapshot serves it after the restore, with
// the used ring continuing where it was, and the UART keeps its
// registers.
func TestDeviceStateRoundTrip(t *testing.T) {
	g := newTestGuest(t, false)
	if !g.start(tgFeatures) {
		t.Fatal("handshake")
	}
	g.request(blkTIn, 0, []tdesc{{tgData, 512, true}})
	if len(g.notify()) != 1 {
		t.Fatal("first request not served")
	}
	// A second request is available but not taken when the snapshot is.
	st := g.request(blkTIn, 1, []tdesc{{tgData, 512, true}})

	var vm VM
	vm.pioBus.name, vm.mmioBus.name = "pio", "mmio"
	u := newUART(nil, nil)
	u.LCR, u.Scratch = 0x03, 0x42
	if err := vm.pioBus.Add("uart", com1, com1Size, u); err != nil {
		t.Fatal(err)
	}
	if err := vm.mmioBus.Add("virtio-blk0", 0xd0000000, 0x1000, g.tr); err != nil {
		t.Fatal(err)
	}
	raw := map[string]json.RawMessage{}
	for n, s := range vm.DeviceStates() {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		raw[n] = b
	}

	// The restored VM: the same guest memory (a snapshot's), new devices.
	mem := &GuestMemory{mem: append([]byte(nil), g.mem.mem...)}
	irqs := 0
	tr2 := newVirtioMMIO(mem, newBlkDevice(g.disk, false), func() { irqs++ })
	var vm2 VM
	vm2.pioBus.name, vm2.mmioBus.name = "pio", "mmio"
	u2 := newUART(nil, nil)
	vm2.pioBus.Add("uart", com1, com1Size, u2)
	vm2.mmioBus.Add("virtio-blk0", 0xd0000000, 0x1000, tr2)
	if err := vm2.restoreDevices(raw); err != nil {
		t.Fatal(err)
	}
	if u2.uartState != u.uartState {
		t.Errorf("UART state %+v, want %+v", u2.uartState, u.uartState)
	}
	if err := tr2.process(); err != nil {
		t.Fatal(err)
	}
	if mem.mem[st] != blkSOK {
		t.Errorf("the request pending at the snapshot has status %#x after the restore", mem.mem[st])
	}
	if got := uint16(mem.mem[tgUsed+2]) | uint16(mem.mem[tgUsed+3])<<8; got != 2 {
		t.Errorf("used.idx %d after the restore, want 2", got)
	}
	if irqs != 0 {
		// InterruptStatus was still set from the first request (the
		// driver had not acknowledged): no new edge, as on the original.
		t.Errorf("%d interrupts; the unacknowledged cause was restored, so none is due", irqs)
	}

	// States that do not fit the VM are refused.
	delete(raw, "pio/uart")
	if err := vm2.restoreDevices(raw); err == nil || !strings.Contains(err.Error(), "no state for device pio/uart") {
		t.Errorf("missing state: %v", err)
	}
	raw["pio/uart"] = json.RawMessage(`{}`)
	raw["mmio/virtio-blk9"] = json.RawMessage(`{}`)
	if err := vm2.restoreDevices(raw); err == nil || !strings.Contains(err.Error(), "does not have") {
		t.Errorf("extra state: %v", err)
	}
	delete(raw, "mmio/virtio-blk9")
	raw["mmio/virtio-blk0"] = json.RawMessage(`{"Queues": [{"Ready": true, "Size": 16, "Desc": 1099511627776}]}`)
	if err := vm2.restoreDevices(raw); err == nil || !strings.Contains(err.Error(), "outside guest memory") {
		t.Errorf("a queue outside memory: %v", err)
	}
	raw["mmio/virtio-blk0"] = json.RawMessage(`{"Queues": [{}, {}]}`)
	if err := vm2.restoreDevices(raw); err == nil || !strings.Contains(err.Error(), "queues") {
		t.Errorf("a device with another number of queues: %v", err)
	}
}

// touchedPages sees the pages written and not the others.
func TestTouchedPages(t *testing.T) {
	m, err := newGuestMemory(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	m.mem[5*4096] = 1
	m.mem[700*4096+17] = 1
	_ = m.mem[900*4096] // a read maps the zero page: not present in pagemap terms? either is fine
	bm, err := m.touchedPages()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{5, 700} {
		if bm[p/64]&(1<<(p%64)) == 0 {
			t.Errorf("page %d written but not in the bitmap", p)
		}
	}
	n := 0
	for p := 0; p < 1024; p++ {
		if bm[p/64]&(1<<(p%64)) != 0 {
			n++
		}
	}
	if n > 3 {
		t.Errorf("%d pages in the bitmap; 2 (or 3) were touched", n)
	}
	// Pages mapped from a file count, untouched: they hold the file's data.
	f, err := os.CreateTemp(t.TempDir(), "img")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{7}, 8*4096))
	if err := m.mapFile(800*4096, 8*4096, int(f.Fd()), 0); err != nil {
		t.Fatal(err)
	}
	if bm, err = m.touchedPages(); err != nil {
		t.Fatal(err)
	}
	for p := 800; p < 808; p++ {
		if bm[p/64]&(1<<(p%64)) == 0 {
			t.Errorf("page %d, mapped from a file, not in the bitmap", p)
		}
	}
}

// Pause holds the vCPU between two runs until Resume; requests reach a
// paused vCPU; Stop ends a paused VM; requests after the end fail.
func TestPauseResume(t *testing.T) {
	g := newFakeGuest(t, Config{})
	vm := g.vm
	var runs atomic.Int64
	vm.vcpu.enter = func() unix.Errno {
		runs.Add(1)
		time.Sleep(time.Millisecond)
		return unix.EINTR // a signal: the loop goes round
	}
	done := make(chan struct{})
	go func() {
		vm.loop()
		vm.endRequests()
		close(done)
	}()
	if err := vm.Pause(); err != nil {
		t.Fatal(err)
	}
	if !vm.Paused() {
		t.Error("not Paused after Pause")
	}
	n := runs.Load()
	time.Sleep(50 * time.Millisecond)
	if m := runs.Load(); m != n {
		t.Errorf("the vCPU ran %d times while paused", m-n)
	}
	ran := false
	if err := vm.onVCPU(func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("a request to the paused vCPU: ran %v, %v", ran, err)
	}
	if err := vm.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := vm.Resume(); err == nil {
		t.Error("a second Resume succeeded")
	}
	for runs.Load() == n {
		time.Sleep(time.Millisecond)
	}
	vm.Pause()
	vm.Stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end a paused VM")
	}
	if err := vm.onVCPU(func() error { return nil }); err != ErrNotRunning {
		t.Errorf("a request after the end: %v, want ErrNotRunning", err)
	}
}
