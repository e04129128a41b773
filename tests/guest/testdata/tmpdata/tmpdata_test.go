// Package tmpdata is run by vmm test --disk (TestTestDisk): its temporary
// files are on the disk's /data, and what it leaves there the host reads.
package tmpdata

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTempDirOnData(t *testing.T) {
	if got := os.TempDir(); got != "/data/tmp" {
		t.Fatalf("os.TempDir() = %q, want /data/tmp", got)
	}
	d := t.TempDir()
	f, err := os.CreateTemp(d, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("kept"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(f.Name(), "/data/kept"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join("/data", "kept")); err != nil || string(b) != "kept" {
		t.Fatalf("read back: %q, %v", b, err)
	}
	// The rename is durable once the directory is synced (the VM's end
	// does not commit /data: what was not synced in the last five seconds
	// is lost, as at a power cut).
	dir, err := os.Open("/data")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		t.Fatal(err)
	}
}
