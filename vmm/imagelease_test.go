package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// An image rewritten in place while a VM of it exists (cp over it, or a
// truncation) changes nothing the VM or the VMM sees: the VMM copies the
// image when its lease on the file breaks, before the writer may write.
func TestImageRewrittenInPlace(t *testing.T) {
	orig := helloImage(t)
	path := filepath.Join(t.TempDir(), "hello.img")
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if !img.leased {
		t.Fatalf("no lease on %s: the image was copied", path)
	}
	fileFd := img.fd
	m, err := newGuestMemory(32 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if err := img.load(m); err != nil {
		t.Fatal(err)
	}
	if len(m.fileRanges) == 0 || len(img.maps) < 2 {
		t.Fatalf("no file mappings: %v, %d", m.fileRanges, len(img.maps))
	}
	// A guest write to a page of a file mapping (a copy of the page) must
	// survive the move onto the copy.
	w := m.fileRanges[0][0] + 5*pageSize
	if err := m.WritePhys(w, []byte("guest")); err != nil {
		t.Fatal(err)
	}
	guest := bytes.Clone(m.mem[:img.End])

	// Shorter and different: truncation, then new bytes.
	t0 := time.Now()
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xcc}, len(orig)/2), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("the in-place write waited %v for the lease break", time.Since(t0))
	img.mu.Lock()
	leased, fd, lerr := img.leased, img.fd, img.leaseErr
	img.mu.Unlock()
	if leased || fd == fileFd || lerr != nil {
		t.Fatalf("after the rewrite: leased %v, fd %d (the file's was %d), error %v", leased, fd, fileFd, lerr)
	}
	if !bytes.Equal(img.raw, orig) {
		t.Error("the VMM's view of the image changed")
	}
	for pa := uint64(0); pa < img.End; pa += pageSize {
		if !bytes.Equal(m.mem[pa:pa+pageSize], guest[pa:pa+pageSize]) {
			t.Errorf("guest page %#x changed (the guest wrote %#x)", pa, w)
		}
	}
	if img.File.Entry != img.Entry {
		t.Error("ELF header changed")
	}
	// A VM made after the rewrite still gets the original image.
	m2, err := newGuestMemory(32 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.close()
	if err := img.load(m2); err != nil {
		t.Fatal(err)
	}
	for _, p := range img.segments {
		got, _ := m2.Slice(p.Paddr, p.Filesz)
		if !bytes.Equal(got, orig[p.Off:p.Off+p.Filesz]) {
			t.Errorf("segment at %#x of a later VM differs from the original", p.Paddr)
		}
	}
}

// A file somebody has open for writing cannot be leased: the image is a
// copy from the start, and writes after the open do not reach it.
func TestImageOpenForWriting(t *testing.T) {
	orig := helloImage(t)
	path := filepath.Join(t.TempDir(), "hello.img")
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	wf, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	img, err := OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.leased {
		t.Fatal("leased a file open for writing")
	}
	m, err := newGuestMemory(32 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if err := img.load(m); err != nil {
		t.Fatal(err)
	}
	guest := bytes.Clone(m.mem[:img.End])
	if _, err := wf.WriteAt(bytes.Repeat([]byte{0xcc}, len(orig)), 0); err != nil {
		t.Fatal(err)
	}
	if err := wf.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.raw, orig) || !bytes.Equal(m.mem[:img.End], guest) {
		t.Error("the rewrite reached the image's copy")
	}
}

// BenchmarkOpenImage: OpenImage and Close of hello's image, mapped under a
// lease against copied into a sealed memfd (the fallback, and what every
// open did before leases), interleaved; reports medians. Any host.
func BenchmarkOpenImage(b *testing.B) {
	path := testImage(b, "../apps/hello")
	defer func() { leaseImages = true }()
	for i := 0; i < b.N; i++ {
		var leased, copied []time.Duration
		for r := 0; r < 41; r++ {
			for _, lease := range []bool{true, false} {
				leaseImages = lease
				t0 := time.Now()
				img, err := OpenImage(path)
				if err != nil {
					b.Fatal(err)
				}
				if img.leased != lease {
					b.Fatalf("leased %v, want %v", img.leased, lease)
				}
				img.Close()
				if lease {
					leased = append(leased, time.Since(t0))
				} else {
					copied = append(copied, time.Since(t0))
				}
			}
		}
		med := func(d []time.Duration) float64 {
			slices.Sort(d)
			return float64(d[len(d)/2].Microseconds()) / 1000
		}
		b.ReportMetric(med(leased), "leased-ms")
		b.ReportMetric(med(copied), "copied-ms")
	}
}
