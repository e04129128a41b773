package vmm

import "testing"

// Resident counts the guest pages touched, and only those.
func TestGuestMemoryResident(t *testing.T) {
	m, err := newGuestMemory(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	before, err := m.Resident()
	if err != nil {
		t.Fatal(err)
	}
	for pa := uint64(0); pa < 4<<20; pa += 4096 {
		if err := m.WritePhys(pa, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	after, err := m.Resident()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 4<<20 || after > 8<<20 {
		t.Errorf("resident %d KiB before, %d KiB after touching 4 MiB", before>>10, after>>10)
	}
}
