package vmm

import (
	"os"
	"path/filepath"
	"testing"
)

// privatePages finds the pages written since a file was mapped into guest
// memory: of four file pages, the one written is set, the ones read or
// untouched are not; of the anonymous pages, the ones touched are set.
func TestPrivatePages(t *testing.T) {
	m, err := newGuestMemory(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	data := make([]byte, 4*pageSize)
	for i := range data {
		data[i] = byte(i/pageSize) + 1
	}
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const base = 16 * pageSize // file pages 16-19
	if err := m.mapFile(base, 4*pageSize, int(f.Fd()), 0); err != nil {
		t.Fatal(err)
	}
	_ = m.mem[base+pageSize+5]      // read page 17
	m.mem[base+2*pageSize+9] = 0xaa // write page 18
	m.mem[3*pageSize] = 1           // touch anonymous page 3
	_ = m.mem[base+3*pageSize]      // read page 19
	bm, err := m.privatePages()
	if err != nil {
		t.Fatal(err)
	}
	set := func(p int) bool { return bm[p/64]&(1<<(p%64)) != 0 }
	for p, want := range map[int]bool{3: true, 4: false, 16: false, 17: false, 18: true, 19: false, 100: false} {
		if set(p) != want {
			t.Errorf("page %d: private %v, want %v", p, set(p), want)
		}
	}
	if m.mem[base+2*pageSize] != 3 || m.mem[base+pageSize] != 2 {
		t.Errorf("the mapping does not hold the file's data")
	}
}
