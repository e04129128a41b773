package guest

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/amberos/amber/tools/guestrun"
	"github.com/amberos/amber/tools/qemu"
)

// TestNetLoopback runs testdata/netloop in the guest: an HTTP server and
// client over 127.0.0.1, ::1 and the dual-stack wildcard (keep-alive and
// fresh connections), a 4 MiB echo with half-close, a refused connection
// and UDP, all on the network service's loopback interface; each check
// compares what came back. With GOMAXPROCS 1 and 2.
func TestNetLoopback(t *testing.T) {
	for _, procs := range []string{"1", "2"} {
		r := runGuest(t, "./testdata/netloop", guestrun.Config{Env: []string{"GOMAXPROCS=" + procs}})
		expect(t, r, 0, "netloop: udp echo ok", "fails ok", "rejected ok", "netloop: ok")
		if n := strings.Count(r.stdout, "40 requests ok"); n != 3 {
			t.Errorf("GOMAXPROCS=%s: %d HTTP checks passed, want 3:\n%s", procs, n, r.stdout)
		}
	}
}

// TestNoNetServiceWithoutNet: a program that does not import net gets no
// network service, so it stays small.
func TestNoNetServiceWithoutNet(t *testing.T) {
	for _, c := range []struct {
		pkg  string
		want bool
	}{{"./testdata/getpid", false}, {"./testdata/netloop", true}} {
		f, err := elf.Open(image(t, c.pkg))
		if err != nil {
			t.Fatal(err)
		}
		syms, err := f.Symbols()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		has := slices.ContainsFunc(syms, func(s elf.Symbol) bool { return strings.HasPrefix(s.Name, "github.com/amberos/amber/kernel/netsvc.") })
		if has != c.want {
			t.Errorf("%s: links the network service: %v, want %v", c.pkg, has, c.want)
		}
	}
}

// TestNetFlag: --net takes QEMU's user-mode network spelling, refuses
// anything else, and with KVM refuses clearly (no device yet) rather than
// booting a guest without its network.
func TestNetFlag(t *testing.T) {
	img := image(t, "./testdata/getpid")
	r := run(t, "run", "--accel", "tcg", "--net", "tap,ifname=x", img)
	if r.code != exitUsage || !strings.Contains(r.stderr, "want user[,OPTIONS]") {
		t.Errorf("--net tap: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, "run", "--accel", "kvm", "--net", "user,hostfwd=tcp:127.0.0.1:18080-:80", img)
	if r.code != exitNotStart || !strings.Contains(r.stderr, "the KVM virtio-net device is not built yet") {
		t.Errorf("--accel kvm --net: exit %d, stderr %q", r.code, r.stderr)
	}
	got := strings.Join(qemu.Args(qemu.Config{Image: img, Memory: 128 << 20, Network: true, Net: "hostfwd=tcp:127.0.0.1:18080-:80"}), " ")
	for _, want := range []string{"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:18080-:80", "-device virtio-net-device,netdev=n0", "virtio-mmio.force-legacy=false", "amber.ip=10.0.2.15/24 amber.gw=10.0.2.2 amber.dns=10.0.2.3"} {
		if !strings.Contains(got, want) {
			t.Errorf("QEMU arguments lack %q: %s", want, got)
		}
	}
}

var netBenchRE = regexp.MustCompile(`bench clients=(\d+) requests=\d+ req_per_s=([0-9.]+)`)

// BenchmarkHTTPLoopback: HTTP requests per second with 1 and 32
// keep-alive clients, server and clients in one guest on the network
// service's loopback interface, against the same program natively on the
// host's loopback. Under TCG the guest figures are the emulator's.
func BenchmarkHTTPLoopback(b *testing.B) {
	needGuest(b)
	native := filepath.Join(b.TempDir(), "netloop")
	if out, err := exec.Command("go", "build", "-o", native, "./testdata/netloop").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	for i := 0; i < b.N; i++ {
		g := runGuest(b, "./testdata/netloop", guestrun.Config{Args: []string{"-bench", "2000"}})
		out, err := exec.Command(native, "-bench", "20000").CombinedOutput()
		if g.code != 0 || err != nil {
			b.Fatalf("guest %d %s; native %v %s", g.code, g.stdout, err, out)
		}
		for _, m := range netBenchRE.FindAllStringSubmatch(g.stdout, -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			b.ReportMetric(v, "guest-c"+m[1]+"-req/s")
		}
		for _, m := range netBenchRE.FindAllStringSubmatch(string(out), -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			b.ReportMetric(v, "native-c"+m[1]+"-req/s")
		}
	}
}
