package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// present reports whether the host backs guest page pa of m.
func present(t *testing.T, m *GuestMemory, pa uint64) bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var e [8]byte
	va := uintptr(unsafe.Pointer(&m.mem[pa]))
	if _, err := f.ReadAt(e[:], int64(va/boot.PageSize*8)); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(e[:])&(1<<63) != 0
}

// populate backs the boot working set, and nothing far from it, and
// leaves the loaded image as it was.
func TestPopulateBootWorkingSet(t *testing.T) {
	img, err := OpenImage(testImage(t, "../apps/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	const ram = 32 << 20
	m, err := newGuestMemory(ram)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if err := img.load(m); err != nil {
		t.Fatal(err)
	}
	var data, text *elf.Prog
	for _, p := range img.segments {
		if p.Flags&elf.PF_W != 0 {
			data = p
		} else if p.Flags&elf.PF_X != 0 {
			text = p
		}
	}
	heap := (img.End + boot.PageSize - 1) &^ (boot.PageSize - 1)
	bss := (data.Paddr + data.Filesz + boot.PageSize) &^ (boot.PageSize - 1)
	textPage := (text.Paddr + text.Filesz/2) &^ (boot.PageSize - 1)
	in := map[string]uint64{
		"bss":                   bss,
		"bss end":               (data.Paddr + data.Memsz - 1) &^ (boot.PageSize - 1),
		"first heap page":       heap,
		"last boot heap page":   heap + bootHeap - boot.PageSize,
		"kernel stack 0's top":  ram - boot.PageSize,
		"kernel stack 2's top":  ram - 2*boot.KernelStackSize - boot.PageSize,
		"the main stack's top":  boot.StackTop - boot.PageSize,
		"the boot stack's top":  boot.BootStackTop - boot.PageSize,
		"the exception stack's": boot.IST1Top - boot.PageSize,
	}
	out := map[string]uint64{
		"text (read-only, left to the guest)": textPage,
		"past the boot heap":                  heap + bootHeap,
		"the middle of RAM":                   ram / 2,
		"kernel stack 3's top":                ram - 3*boot.KernelStackSize - boot.PageSize,
		"kernel stack 0's bottom":             ram - boot.KernelStackSize,
		"the main stack's bottom":             boot.StackBottom,
		"below the exception stack":           boot.IST1Top - bootStackDepth - boot.PageSize,
	}
	for name, pa := range in {
		if present(t, m, pa) {
			t.Fatalf("%s (%#x) is backed before populate", name, pa)
		}
	}
	img.populate(m)
	for name, pa := range in {
		if !present(t, m, pa) {
			t.Errorf("%s (%#x) is not backed after populate", name, pa)
		}
	}
	for name, pa := range out {
		if present(t, m, pa) {
			t.Errorf("%s (%#x) is backed after populate", name, pa)
		}
	}
	for _, p := range img.segments {
		got, _ := m.Slice(p.Paddr, p.Memsz)
		want := make([]byte, p.Memsz)
		copy(want, img.raw[p.Off:p.Off+p.Filesz])
		if !bytes.Equal(got, want) {
			t.Errorf("segment at %#x changed by populate", p.Paddr)
		}
	}
}

// BenchmarkPopulate: what populating the boot working set costs the VMM
// (newGuestMemory, load and populate against newGuestMemory and load, 128
// MiB, interleaved; medians). Any host: what it saves the guest needs KVM
// (BenchmarkBootToMain).
func BenchmarkPopulate(b *testing.B) {
	img, err := OpenImage(testImage(b, "../apps/hello"))
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	for i := 0; i < b.N; i++ {
		var with, without []time.Duration
		var pages uint64
		for r := 0; r < 41; r++ {
			for _, pop := range []bool{true, false} {
				t0 := time.Now()
				m, err := newGuestMemory(DefaultMemory)
				if err != nil {
					b.Fatal(err)
				}
				if err := img.load(m); err != nil {
					b.Fatal(err)
				}
				if pop {
					img.populate(m)
					with = append(with, time.Since(t0))
					if res, err := m.Resident(); err == nil {
						pages = res / boot.PageSize
					}
				} else {
					without = append(without, time.Since(t0))
				}
				img.forget(m)
				m.close()
			}
		}
		med := func(d []time.Duration) float64 {
			slices.Sort(d)
			return float64(d[len(d)/2].Microseconds()) / 1000
		}
		b.ReportMetric(med(with), "populated-ms")
		b.ReportMetric(med(without), "load-only-ms")
		b.ReportMetric(float64(pages), "resident-pages")
	}
}
