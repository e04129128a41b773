package build

import (
	"bytes"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// The newc writer gives the same bytes as u-root's, which it replaced
// (and whose archives the kernel's reader was tested with).
func TestCPIOWriterMatchesURoot(t *testing.T) {
	recs := []struct {
		info cpioInfo
		data []byte
	}{
		{cpioInfo{Name: "etc", Ino: 2, NLink: 2, Mode: cpioDir | 0o755}, nil},
		{cpioInfo{Name: "etc/hosts", Ino: 3, NLink: 1, MTime: 1700000000, Mode: cpioRegular | 0o644}, []byte("127.0.0.1 localhost\n")},
		{cpioInfo{Name: "etc/odd", Ino: 4, NLink: 1, Mode: cpioRegular | 0o4755}, []byte("abcde")},
		{cpioInfo{Name: "etc/empty", Ino: 5, NLink: 1, Mode: cpioRegular | 0o600}, []byte{}},
		{cpioInfo{Name: "link", Ino: 6, NLink: 1, Mode: cpioSymlink | 0o777}, []byte("etc/hosts")},
	}
	var mine, theirs bytes.Buffer
	w := cpioWriter{&mine}
	u := cpio.Newc.Writer(&theirs)
	for _, r := range recs {
		if err := w.write(r.info, r.data); err != nil {
			t.Fatal(err)
		}
		i := cpio.Info{Name: r.info.Name, Ino: r.info.Ino, NLink: r.info.NLink, MTime: r.info.MTime, Mode: r.info.Mode}
		if err := u.WriteRecord(cpio.StaticRecord(r.data, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.trailer(); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(u); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine.Bytes(), theirs.Bytes()) {
		t.Errorf("archives differ:\nours   %q\nu-root %q", mine.Bytes(), theirs.Bytes())
	}
	if err := w.write(cpioInfo{Name: "big", Ino: 1 << 33}, nil); err == nil {
		t.Error("an inode number beyond 32 bits was written")
	}
}
