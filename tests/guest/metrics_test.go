package guest

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/vmm/api"
)

// metrics is the part of GET /metrics the test reads.
type metrics struct {
	Uptime        int64                        `json:"uptimeNs"`
	Paused        bool                         `json:"paused"`
	Exits         map[string]int               `json:"exits"`
	Resident      int64                        `json:"residentBytes"`
	GuestResident int64                        `json:"guestResidentBytes"`
	Devices       map[string]map[string]uint64 `json:"devices"`
}

func (m metrics) exits() int {
	n := 0
	for _, v := range m.Exits {
		n += v
	}
	return n
}

// device returns the counters of the device that has counter key (the
// disk has "reads", the network device "txFrames").
func (m metrics) device(t *testing.T, key string) map[string]uint64 {
	t.Helper()
	for _, d := range m.Devices {
		if _, ok := d[key]; ok {
			return d
		}
	}
	t.Fatalf("no device with %q in the metrics: %+v", key, m.Devices)
	return nil
}

// The control API's metrics of a running VM move as they should: a
// guest (testdata/metricsio) makes disk and network requests on command,
// and between two readings of GET /metrics the disk's counters grow by
// exactly the reads, writes and flush it made, the network device's
// transmitted frames by at least the datagrams it sent, the exits and
// the uptime grow, and the memory figures are those of a running VM.
// A pause shows in the metrics, and the uptime, the time since the
// guest booted, goes on across it.
func TestAPIMetrics(t *testing.T) {
	needKVM(t)
	img := image(t, "./testdata/metricsio")
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "vm.sock")
	pr, pw := io.Pipe()
	defer pw.Close()
	vm := startVMInput(t, pr, "run", "--timeout", "600s", "--disk", disk, "--net", "user", "--cmdline", "amber.data=off", "--api", sock, img)
	wait := func(want string) {
		t.Helper()
		timeout := time.After(240 * time.Second)
		for {
			select {
			case l, ok := <-vm.lines:
				if !ok {
					t.Fatalf("the VM ended before %q; output:\n%s\nstderr:\n%s", want, strings.Join(vm.all, "\n"), vm.stderr.String())
				}
				vm.all = append(vm.all, l)
				if l == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %q within 240s; output:\n%s\nstderr:\n%s", want, strings.Join(vm.all, "\n"), vm.stderr.String())
			}
		}
	}
	c := api.NewClient(sock)
	get := func() metrics {
		t.Helper()
		var m metrics
		if err := c.Do("GET", "/metrics", nil, &m); err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		return m
	}
	wait("ready")
	m0 := get()
	t.Logf("at ready: %+v", m0)
	if m0.Uptime <= 0 || m0.exits() == 0 || m0.Resident <= 0 || m0.GuestResident <= 0 || m0.GuestResident > m0.Resident || m0.Paused {
		t.Errorf("metrics of a running VM: uptime %d ns, %d exits, resident %d bytes of which guest %d, paused %v", m0.Uptime, m0.exits(), m0.Resident, m0.GuestResident, m0.Paused)
	}
	if m0.GuestResident >= 128<<20 {
		t.Errorf("guest resident %d bytes: as much as all its RAM (128 MiB), which it did not touch", m0.GuestResident)
	}

	const nread, nwrite, nudp = 37, 23, 15
	io.WriteString(pw, "read 37\n")
	wait("done read")
	io.WriteString(pw, "write 23\n")
	wait("done write")
	m1 := get()
	d0, d1 := m0.device(t, "reads"), m1.device(t, "reads")
	if d1["reads"]-d0["reads"] != nread || d1["writes"]-d0["writes"] != nwrite || d1["flushes"]-d0["flushes"] != 1 || d1["errors"] != d0["errors"] {
		t.Errorf("disk counters from %v to %v; want %d reads, %d writes, 1 flush and no error more", d0, d1, nread, nwrite)
	}
	if d1["served"]-d0["served"] != nread+nwrite+1 {
		t.Errorf("disk requests served from %d to %d; want %d more", d0["served"], d1["served"], nread+nwrite+1)
	}
	if m1.exits() <= m0.exits() || m1.Uptime <= m0.Uptime {
		t.Errorf("after the disk requests: exits %d -> %d, uptime %d -> %d ns; want both to grow", m0.exits(), m1.exits(), m0.Uptime, m1.Uptime)
	}

	n0 := m1.device(t, "txFrames")
	io.WriteString(pw, "udp 15\n")
	wait("done udp")
	// The device's goroutine may not have taken the last frames from the
	// ring when the guest prints: read until they are counted.
	var n1 map[string]uint64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n1 = get().device(t, "txFrames")
		if n1["txFrames"]-n0["txFrames"] >= nudp || time.Now().After(deadline) {
			break
		}
	}
	if tx := n1["txFrames"] - n0["txFrames"]; tx < nudp || tx > nudp+8 {
		t.Errorf("network frames sent from %d to %d; want the %d datagrams (and at most an ARP exchange's few frames more)", n0["txFrames"], n1["txFrames"], nudp)
	}

	if r := run(t, "pause", "--api", sock); r.code != 0 {
		t.Fatalf("vmm pause: exit %d\n%s", r.code, r.stderr)
	}
	m2 := get()
	if !m2.Paused {
		t.Errorf("metrics after pause: paused %v", m2.Paused)
	}
	if r := run(t, "resume", "--api", sock); r.code != 0 {
		t.Fatalf("vmm resume: exit %d\n%s", r.code, r.stderr)
	}
	m3 := get()
	if m3.Paused || m3.Uptime <= m2.Uptime {
		t.Errorf("metrics after resume: paused %v, uptime %d ns after %d", m3.Paused, m3.Uptime, m2.Uptime)
	}
	pw.Close() // the guest ends at the end of its input
	if _, status := vm.rest(t); status != 0 {
		t.Errorf("vmm run: exit %d\nstderr:\n%s", status, vm.stderr.String())
	}
}
