package vmm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// fakeGuest plays the vCPU for tests that need no KVM: guest memory and
// the run area are ordinary memory, and each KVM_RUN runs the next step.
type fakeGuest struct {
	t     *testing.T
	vm    *VM
	steps []func() unix.Errno
	runs  int
}

const (
	fakeBlockPA = 0x1000 // the hypercall block
	fakeDataPA  = 0x2000 // buffers
	fakeIOOff   = 0x800  // the port-I/O data in the run area
)

func newFakeGuest(t *testing.T, cfg Config) *fakeGuest {
	t.Helper()
	runMap, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	vcpu := &VCPU{runMap: runMap, run: (*kvm.RunData)(unsafe.Pointer(&runMap[0]))}
	vm := &VM{cfg: cfg, mem: &GuestMemory{mem: make([]byte, 1<<20)}, vcpu: vcpu, tscHz: 1e9}
	if vm.cfg.Stdout == nil {
		vm.cfg.Stdout = &bytes.Buffer{}
	}
	if vm.cfg.Stderr == nil {
		vm.cfg.Stderr = &bytes.Buffer{}
	}
	if err := vm.initConsole(); err != nil {
		t.Fatal(err)
	}
	if err := vm.addDevices(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() }) // unmaps the run area
	g := &fakeGuest{t: t, vm: vm}
	vm.vcpu.enter = func() unix.Errno {
		if g.runs >= len(g.steps) {
			t.Fatalf("KVM_RUN #%d: the guest script has ended", g.runs+1)
		}
		g.runs++
		return g.steps[g.runs-1]()
	}
	return g
}

// hypercall adds a step that exits with the hypercall nr(a0, a1, a2).
func (g *fakeGuest) hypercall(nr, a0, a1, a2 uint64) {
	g.steps = append(g.steps, func() unix.Errno {
		b, _ := g.vm.mem.Slice(fakeBlockPA, 48)
		clear(b)
		le := binary.LittleEndian
		le.PutUint64(b[0:], nr)
		le.PutUint64(b[8:], a0)
		le.PutUint64(b[16:], a1)
		le.PutUint64(b[24:], a2)
		g.vm.vcpu.run.ExitReason = uint32(kvm.EXITIO)
		g.vm.vcpu.run.Data[0] = 1 | 4<<8 | boot.HypercallPort<<16 | 1<<32 // out, 4 bytes, once
		g.vm.vcpu.run.Data[1] = fakeIOOff
		le.PutUint32(g.vm.vcpu.runMap[fakeIOOff:], fakeBlockPA)
		return 0
	})
}

// write adds a console write of s to fd.
func (g *fakeGuest) write(fd uint64, s string) {
	g.hypercall(boot.HCConsoleWrite, fd, fakeDataPA, uint64(len(s)))
	exit := g.steps[len(g.steps)-1]
	g.steps[len(g.steps)-1] = func() unix.Errno {
		b, _ := g.vm.mem.Slice(fakeDataPA, uint64(len(s)))
		copy(b, s)
		return exit()
	}
}

// interrupted adds a KVM_RUN that fails with errno (EINTR: immediate_exit
// or a signal) without touching the run area, as KVM does.
func (g *fakeGuest) interrupted(errno unix.Errno, then func()) {
	g.steps = append(g.steps, func() unix.Errno {
		if then != nil {
			then()
		}
		return errno
	})
}

// ret is the Ret field of the hypercall block.
func (g *fakeGuest) ret() int64 {
	b, _ := g.vm.mem.Slice(fakeBlockPA, 48)
	return int64(binary.LittleEndian.Uint64(b[40:]))
}

// A KVM_RUN that fails with EINTR or EAGAIN left the previous exit in the
// run area: serving it again printed a line twice and lost console input
// (issue 8). Each exit is served once.
func TestInterruptedRunServesNoExitTwice(t *testing.T) {
	var out bytes.Buffer
	g := newFakeGuest(t, Config{Stdout: &out, Stdin: bytes.NewReader(nil)})
	g.write(1, "line 1\n")
	g.interrupted(unix.EINTR, nil)
	g.interrupted(unix.EAGAIN, nil)
	g.write(1, "line 2\n")
	g.interrupted(unix.EINTR, nil)
	g.hypercall(boot.HCExit, 7, 0, 0)
	status, err := g.vm.loop()
	if err != nil || status != 7 {
		t.Fatalf("status %d, err %v; want 7", status, err)
	}
	if out.String() != "line 1\nline 2\n" {
		t.Errorf("console output %q, want each line once", out.String())
	}
	if g.runs != len(g.steps) {
		t.Errorf("%d of %d steps ran", g.runs, len(g.steps))
	}
}

// A stop request that interrupts KVM_RUN ends the loop without serving
// the stale exit.
func TestStopInterruptsRun(t *testing.T) {
	var out bytes.Buffer
	g := newFakeGuest(t, Config{Stdout: &out})
	g.write(1, "once\n")
	g.interrupted(unix.EINTR, func() { g.vm.stop.Store(true) })
	status, err := g.vm.loop()
	if err != nil || status != ExitInterrupted || out.String() != "once\n" {
		t.Errorf("status %d, err %v, output %q; want %d and the line once", status, err, out.String(), ExitInterrupted)
	}
}

func needKVM(t testing.TB) {
	t.Helper()
	if err := KVMAvailable(); err != nil {
		t.Skipf("cannot boot guests here: %v; this test runs on nested KVM in tools/nestkvm (make kvmtest)", err)
	}
}

// pattern returns n bytes that differ from line to line, so a lost or
// repeated chunk shows.
func pattern(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d of the copy test\n", i)
	}
	return b.Bytes()[:n]
}

// Kicks (Ctrl-C, a timeout, a host signal) make KVM_RUN fail with EINTR
// at any moment. With the exit reason of the previous exit still in the
// run area, a re-served console read lost its data and a console write
// printed twice. Here the guest copies stdin to stdout while it is kicked
// over and over: every byte must come through once.
func TestKicksLoseNothing(t *testing.T) {
	needKVM(t)
	img, err := OpenImage(testImage(t, "../tests/guest/testdata/copyio"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	in := pattern(4 << 20)
	var out, errOut bytes.Buffer
	vm, err := New(Config{Image: img, Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	kicks := 0
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			// SIGURG: the Go runtime in the guest takes it as a
			// preemption request, so only the kick matters.
			vm.Signal(syscall.SIGURG)
			kicks++
			time.Sleep(20 * time.Microsecond)
		}
	})
	status, err := vm.Run()
	close(done)
	wg.Wait()
	if err != nil || status != 0 {
		t.Fatalf("status %d, err %v\nstderr:\n%s", status, err, errOut.String())
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Errorf("after %d kicks: %d bytes out of %d in; first difference at byte %d\nstderr:\n%s",
			kicks, out.Len(), len(in), firstDiff(out.Bytes(), in), errOut.String())
	}
	t.Logf("%d kicks, %d interrupted runs", kicks, vm.vcpu.exits[kvm.EXITINTR])
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A Ctrl-C or the timeout may come as vmm closes the VM: Stop and Signal
// after Close do nothing (they used to write to the unmapped run area and
// guest memory).
func TestStopAndSignalAfterClose(t *testing.T) {
	g := newFakeGuest(t, Config{})
	g.vm.Close() // (fails to unmap the fake's guest memory, which is Go memory)
	g.vm.Stop()
	if g.vm.Signal(syscall.SIGINT) {
		t.Error("Signal after Close reported success")
	}
}
