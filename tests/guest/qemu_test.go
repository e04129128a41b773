package guest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/vmm"
)

// The same images under QEMU (TCG only: on the development hosts KVM runs
// CPL0 code by emulation, so `-accel kvm` firmware crawls), booted through
// the Xen PVH note and the kernel's 32-bit entry, plus `vmm run --boot=pvh`
// through that same entry on KVM.
//
// QEMU is driven with os/exec rather than github.com/hugelgupf/vmtest/qemu:
// vmtest is built around Linux guests (u-root initramfs, a guest agent and
// its own kernel command line), while these tests need a bare `-kernel
// IMAGE`, the raw serial output and the isa-debug-exit status, which a
// plain command with a timeout gives directly, with no new dependency.

const qemuBin = "qemu-system-x86_64"

func needQEMU(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(qemuBin)
	if err != nil {
		t.Skipf("%s is not installed (Debian/Ubuntu: apt-get install -y qemu-system-x86): %v", qemuBin, err)
	}
	return p
}

// qemuArgs boots img on machine (microvm or pc) under TCG. -cpu max: the
// kernel needs FSGSBASE, which QEMU's default qemu64 model lacks.
func qemuArgs(machine, img string) []string {
	return []string{
		"-M", machine, "-accel", "tcg", "-cpu", "max", "-m", "256M",
		"-kernel", img, "-nographic", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
	}
}

// runQEMU boots img and maps QEMU's exit status back to the guest's: the
// kernel writes its status v to isa-debug-exit and QEMU exits with
// (v<<1)|1. Any other QEMU status (0: the guest reset or triple-faulted
// under -no-reboot) is reported as -1.
func runQEMU(t testing.TB, bin, machine, img string) (out string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, qemuArgs(machine, img)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("qemu -M %s %s: timed out\n%s", machine, img, buf.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return buf.String(), -1
	case errors.As(err, &ee) && ee.ExitCode()&1 == 1:
		return buf.String(), ee.ExitCode() >> 1
	default:
		t.Fatalf("qemu -M %s %s: %v\n%s", machine, img, err, buf.String())
	}
	return
}

func TestQEMUSmoke(t *testing.T) {
	bin := needQEMU(t)
	cases := []struct {
		pkg    string
		status int
		want   string
	}{
		{"../../apps/hello", 0, "Hello from Amber! (go1.26"},
		{"./testdata/goroutines", 0, "total=118000 elapsed_ok=true"},
		{"./testdata/exit3", 3, "exiting with 3"},
	}
	for _, machine := range []string{"microvm", "pc"} {
		for _, c := range cases {
			t.Run(machine+"/"+filepath.Base(c.pkg), func(t *testing.T) {
				out, status := runQEMU(t, bin, machine, image(t, c.pkg))
				if status != c.status || !strings.Contains(out, c.want) {
					t.Errorf("guest status %d, want %d; output should contain %q:\n%s", status, c.status, c.want, out)
				}
				if strings.Contains(out, "amber: ") {
					t.Errorf("kernel complaint in the output:\n%s", out)
				}
			})
		}
	}
}

// TestQEMUWithoutFSGSBASE: on a CPU model without FSGSBASE the 32-bit
// entry says so on the console and exits with the crash status.
func TestQEMUWithoutFSGSBASE(t *testing.T) {
	bin := needQEMU(t)
	img := image(t, "../../apps/hello")
	args := qemuArgs("microvm", img)
	for i, a := range args {
		if a == "max" {
			args[i] = "qemu64"
		}
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != boot.ExitCrash<<1|1 || !strings.Contains(string(out), "lacks FSGSBASE") {
		t.Errorf("qemu -cpu qemu64: %v\n%s", err, out)
	}
}

func TestPVHBootUnderVMM(t *testing.T) {
	needKVM(t)
	r := run(t, "run", "--boot=pvh", "--timeout", "60s", image(t, "../../apps/hello"))
	expect(t, r, 0, "Hello from Amber! (go1.26", "linux/amd64, 1 CPU)")
	r = run(t, "run", "--boot", "pvh", "--timeout", "60s", image(t, "./testdata/exit3"))
	expect(t, r, 3, "exiting with 3")
	r = run(t, "run", "--boot", "pvh", "--timeout", "60s", image(t, "./testdata/goroutines"))
	expect(t, r, 0, "total=118000 elapsed_ok=true")
}

// pvhNote returns the Xen PVH note's offset in the file and its entry.
func pvhNote(t testing.TB, raw []byte) (off int, entry uint32) {
	t.Helper()
	hdr := binary.LittleEndian.AppendUint32(nil, 4)
	hdr = binary.LittleEndian.AppendUint32(hdr, 4)
	hdr = binary.LittleEndian.AppendUint32(hdr, boot.NoteTypePVH)
	hdr = append(hdr, "Xen\x00"...)
	off = bytes.Index(raw, hdr)
	if off < 0 || bytes.Count(raw, hdr) != 1 {
		t.Fatalf("want exactly one Xen PVH note in the image, found %d", bytes.Count(raw, hdr))
	}
	return off, binary.LittleEndian.Uint32(raw[off+len(hdr):])
}

func TestPVHNote(t *testing.T) {
	path := image(t, "../../apps/hello")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	sym := uint64(0)
	for _, s := range syms {
		if s.Name == boot.PVHEntrySym+".abi0" {
			sym = s.Value
		}
	}
	if sym == 0 {
		t.Fatalf("no %s symbol", boot.PVHEntrySym)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off, entry := pvhNote(t, raw)
	if uint64(entry) != sym {
		t.Errorf("PVH note entry %#x, want the 32-bit entry %s at %#x", entry, boot.PVHEntrySym, sym)
	}
	// The note lies in a PT_NOTE segment, as loaders require.
	inNote := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE && uint64(off) >= p.Off && uint64(off) < p.Off+p.Filesz {
			inNote = true
		}
	}
	if !inNote {
		t.Errorf("the Xen note at file offset %#x is outside every PT_NOTE segment", off)
	}
	img, err := vmm.OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if e, err := img.PVHEntry(); err != nil || uint64(e) != sym {
		t.Errorf("vmm PVHEntry = %#x, %v; want %#x", e, err, sym)
	}
	// The entry's first bytes are the 32-bit stub (cld; cmp $StartInfoPA, %ebx).
	text := f.Section(".text")
	code := make([]byte, 7)
	if _, err := text.ReadAt(code, int64(sym-text.Addr)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(code, []byte{0xfc, 0x81, 0xfb, 0x00, 0x00, 0x01, 0x00}) {
		t.Errorf("the PVH entry starts with % x, want the 32-bit stub", code)
	}
}

func TestPVHNoteMissingOrCorrupt(t *testing.T) {
	raw, err := os.ReadFile(image(t, "../../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	off, _ := pvhNote(t, raw)
	dir := t.TempDir()
	variant := func(name string, edit func(b []byte)) string {
		b := bytes.Clone(raw)
		edit(b)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct{ name, path, want string }{
		{"missing", variant("nonote.img", func(b []byte) { b[off+8] = 19 }), "has no PVH entry note"},
		{"outside", variant("outside.img", func(b []byte) { binary.LittleEndian.PutUint32(b[off+16:], 0x1000) }), "corrupt PVH note: entry 0x1000 is not in the image's code"},
		{"size", variant("size.img", func(b []byte) { b[off+4] = 3 }), "corrupt PVH note"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := vmm.OpenImage(c.path)
			if err != nil {
				t.Fatalf("the image should still open (only --boot=pvh needs the note): %v", err)
			}
			_, err = img.PVHEntry()
			img.Close()
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, vmm.ErrNoPVHNote) {
				t.Errorf("PVHEntry: %v; want an error with %q", err, c.want)
			}
			needKVM(t)
			r := run(t, "run", "--boot=pvh", c.path)
			if r.code != exitNotStart || !strings.Contains(r.stderr, c.want) {
				t.Errorf("vmm run --boot=pvh: exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitNotStart, c.want)
			}
			// The direct boot does not need the note.
			expect(t, run(t, "run", c.path), 0, "Hello from Amber!")
		})
	}
	t.Run("bad flag", func(t *testing.T) {
		needKVM(t)
		r := run(t, "run", "--boot=bios", image(t, "../../apps/hello"))
		if r.code != exitNotStart || !strings.Contains(r.stderr, `unknown boot path "bios"`) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestRAMEnd(t *testing.T) {
	type e = boot.MemmapEntry
	cases := []struct {
		name string
		m    []boot.MemmapEntry
		want uint64
	}{
		{"vmm", []e{{Addr: 0, Size: boot.ImageBase, Type: 2}, {Addr: boot.ImageBase, Size: 126 << 20, Type: 1}}, 128 << 20},
		// QEMU 7.2 -M microvm -m 128M (qboot), as observed.
		{"microvm", []e{{Addr: 0, Size: 0x9fc00, Type: 1}, {Addr: 0x9fc00, Size: 0x400, Type: 2}, {Addr: 0xf0000, Size: 0x10000, Type: 2}, {Addr: 0x100000, Size: 0x7f00000, Type: 1}}, 0x8000000},
		// QEMU 7.2 -M pc -m 128M (SeaBIOS keeps the top 128 KiB).
		{"pc", []e{{Addr: 0, Size: 0x9fc00, Type: 1}, {Addr: 0x100000, Size: 0x7ee0000, Type: 1}, {Addr: 0x7fe0000, Size: 0x20000, Type: 2}}, 0x7e00000},
		{"huge", []e{{Addr: 0x100000, Size: 64 << 30, Type: 1}}, boot.MaxMemory},
		{"overflow", []e{{Addr: 0x100000, Size: ^uint64(0), Type: 1}}, boot.MaxMemory},
		{"none at the image", []e{{Addr: 0, Size: 0x9fc00, Type: 1}, {Addr: 0x400000, Size: 1 << 30, Type: 1}}, 0},
		{"empty", nil, 0},
	}
	for _, c := range cases {
		if got := boot.RAMEnd(c.m); got != c.want {
			t.Errorf("%s: RAMEnd = %#x, want %#x", c.name, got, c.want)
		}
	}
}

// BenchmarkPVHBootToMain: vCPU start to main() through the 32-bit PVH
// entry (CPL0 code: emulated on shadow-paging hosts) against the direct
// boot, measured in the same run, and the extra cost of the entry.
func BenchmarkPVHBootToMain(b *testing.B) {
	needKVM(b)
	img, err := vmm.OpenImage(image(b, "./testdata/bootmark"))
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	boot1 := func(path string) time.Duration {
		vm, err := vmm.New(vmm.Config{Image: img, Boot: path})
		if err != nil {
			b.Fatal(err)
		}
		defer vm.Close()
		status, err := vm.Run()
		if err != nil || status != 0 || len(vm.Marks()) != 1 {
			b.Fatalf("%s: status %d, err %v, marks %v", path, status, err, vm.Marks())
		}
		return vm.Marks()[0].SinceBoot
	}
	for i := 0; i < b.N; i++ {
		var direct, pvh []time.Duration
		for r := 0; r < benchRuns; r++ {
			direct = append(direct, boot1("direct"))
			pvh = append(pvh, boot1("pvh"))
		}
		d, p := median(direct), median(pvh)
		b.ReportMetric(float64(d.Microseconds())/1000, "direct-ms")
		b.ReportMetric(float64(p.Microseconds())/1000, "pvh-ms")
		b.ReportMetric(float64((p-d).Microseconds())/1000, "pvh-extra-ms")
	}
}

// BenchmarkQEMUHello: wall time of hello under QEMU TCG (-M microvm and
// -M pc), from exec to exit, against `vmm run` of the same image.
func BenchmarkQEMUHello(b *testing.B) {
	bin := needQEMU(b)
	img := image(b, "../../apps/hello")
	for i := 0; i < b.N; i++ {
		var micro, pc, kvm []time.Duration
		for r := 0; r < benchRuns; r++ {
			for _, m := range []struct {
				name string
				d    *[]time.Duration
			}{{"microvm", &micro}, {"pc", &pc}} {
				t0 := time.Now()
				if _, status := runQEMU(b, bin, m.name, img); status != 0 {
					b.Fatalf("qemu -M %s: guest status %d", m.name, status)
				}
				*m.d = append(*m.d, time.Since(t0))
			}
			if kvmReason == nil {
				kvm = append(kvm, timeCmd(b, vmmBin, "run", img))
			}
		}
		b.ReportMetric(float64(median(micro).Microseconds())/1000, "qemu-microvm-ms")
		b.ReportMetric(float64(median(pc).Microseconds())/1000, "qemu-pc-ms")
		if len(kvm) > 0 {
			b.ReportMetric(float64(median(kvm).Microseconds())/1000, "vmm-ms")
		}
	}
}
