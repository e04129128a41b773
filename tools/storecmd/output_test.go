package storecmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
)

// A damaged newest superblock: every command that opens the store says on
// stderr that the newest commit is unreadable and which one it shows.
func TestNewestSuperblockWarning(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "s")
	must(t, nil, "create", st)
	must(t, []byte("a"), "put", st, "a")
	must(t, []byte("b"), "put", st, "b")
	dev, err := filedev.Open(st, filedev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	txid := s.TxID()
	dev.Close()
	if r := run(t, nil, "ls", st); r.stderr != "" {
		t.Fatalf("ls of a clean store: %+v", r)
	}
	// Flip one bit of the newest superblock's checksum.
	f, err := os.OpenFile(st, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(txid%2)*objstore.BlockSize + 80
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 1
	f.WriteAt(b, off)
	f.Close()

	warn := "warning: " + st + ": the newest commit, transaction " + itoa(txid) + ", is unreadable (superblock " + itoa(txid%2) +
		": checksum mismatch); using the previous commit, transaction " + itoa(txid-1)
	r := run(t, nil, "ls", st)
	if r.code != 0 || !strings.Contains(r.stderr, "store ls: "+warn) || strings.Contains(r.stdout, "b") || !strings.Contains(r.stdout, "a") {
		t.Errorf("ls: %+v\nwant on stderr: %s", r, warn)
	}
	for _, args := range [][]string{{"get", st, "a"}, {"du", st}} {
		if r := run(t, nil, args...); r.code != 0 || !strings.Contains(r.stderr, "store "+args[0]+": "+warn) {
			t.Errorf("store %v: %+v", args, r)
		}
	}
	if r := run(t, nil, "fsck", st); r.code != 1 || !strings.Contains(r.stdout, "superblock "+itoa(txid%2)+" invalid: checksum mismatch") {
		t.Errorf("fsck: %+v", r)
	}
	// A change commits on top of the commit shown, and says so.
	r = run(t, []byte("c"), "put", st, "c")
	if r.code != 0 || !strings.Contains(r.stderr, "store put: "+warn+"; this command commits on top of transaction "+itoa(txid-1)) {
		t.Errorf("put: %+v", r)
	}
	if r := run(t, nil, "ls", st); r.stderr != "" || !strings.Contains(r.stdout, "c") {
		t.Errorf("ls after a commit: %+v", r)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
