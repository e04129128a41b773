package vmm

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amberos/amber/boot"
)

// A guest that marks in a loop grew the VMM without bound (74 MB after
// a million marks, issue 8): only the first maxMarks are kept.
func TestMarksAreBounded(t *testing.T) {
	g := newFakeGuest(t, Config{})
	const n = 100_000
	for i := range n {
		g.hypercall(boot.HCMark, uint64(i), uint64(i)*1000, 0)
	}
	g.hypercall(boot.HCExit, 0, 0, 0)
	if status, err := g.vm.loop(); status != 0 || err != nil {
		t.Fatalf("status %d, err %v", status, err)
	}
	marks := g.vm.Marks()
	if len(marks) != maxMarks || cap(marks) > 2*maxMarks || g.vm.DroppedMarks() != n-maxMarks {
		t.Fatalf("kept %d marks (capacity %d), dropped %d; want the first %d kept", len(marks), cap(marks), g.vm.DroppedMarks(), maxMarks)
	}
	if marks[0].ID != 0 || marks[maxMarks-1].ID != maxMarks-1 {
		t.Errorf("kept marks %d..%d, want the first ones", marks[0].ID, marks[maxMarks-1].ID)
	}
}

// endless is a host input that never ends (/dev/zero) and counts what
// was taken from it.
type endless struct{ taken atomic.Int64 }

func (r *endless) Read(p []byte) (int, error) {
	clear(p)
	r.taken.Add(int64(len(p)))
	return len(p), nil
}

// settle waits until the pump has taken want bytes, then gives it time
// to take more if it would (it must not).
func settle(t *testing.T, r *endless, want int64) {
	t.Helper()
	for i := 0; i < 2000 && r.taken.Load() < want; i++ {
		time.Sleep(time.Millisecond)
	}
	for range 50 {
		time.Sleep(time.Millisecond)
	}
	if got := r.taken.Load(); got != want {
		t.Fatalf("the VMM took %d bytes of host input, want %d", got, want)
	}
}

// stdin from /dev/zero with a guest that never reads it: 1.26 GB of VMM
// memory in 2.8 s (issue 8). The pump holds at most maxInput bytes and
// takes more only as the guest reads.
func TestInputIsBounded(t *testing.T) {
	r := &endless{}
	p := newInputPump(r)
	defer p.close()
	settle(t, r, maxInput)
	buf := make([]byte, 1000)
	if n := p.read(buf); n != len(buf) {
		t.Fatalf("read %d bytes, want %d", n, len(buf))
	}
	settle(t, r, maxInput+1000)
	got := int64(len(buf))
	big := make([]byte, 64<<10)
	for got < 3*maxInput {
		n := p.read(big)
		if n < 0 {
			t.Fatal("end of input from an endless reader")
		}
		got += int64(n)
		if n == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if taken := r.taken.Load(); taken > got+maxInput {
		t.Errorf("the guest read %d bytes, the VMM took %d from the host: more than %d ahead", got, taken, maxInput)
	}
}

// The pump delivers everything in order and then end of input.
func TestInputInOrder(t *testing.T) {
	in := pattern(1 << 20)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for rest := in; len(rest) > 0; {
			n := min(len(rest), 7777)
			pw.Write(rest[:n])
			rest = rest[n:]
		}
		pw.Close()
	}()
	p := newInputPump(pr)
	defer p.close()
	var out []byte
	buf := make([]byte, 5000)
	for {
		n := p.read(buf)
		if n < 0 {
			break
		}
		if n == 0 {
			p.wait(nil, new(atomic.Bool))
			continue
		}
		out = append(out, buf[:n]...)
	}
	if string(out) != string(in) {
		t.Fatalf("%d bytes out of %d, first difference at %d", len(out), len(in), firstDiff(out, in))
	}
}
