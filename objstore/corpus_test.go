//go:build corpus

// Regenerates the fuzz seed corpus: go test -tags corpus -run TestWriteFuzzCorpus ./objstore

package objstore

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzOpen.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	write := func(name string, img []byte) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(img)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := smallStore(t)
	write("store", img)
	empty := NewMemDevice(nil)
	Create(empty)
	write("empty", empty.Bytes()[:2*BlockSize])
}
