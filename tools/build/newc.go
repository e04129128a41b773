package build

import (
	"bytes"
	"fmt"
)

// The packed files go to the kernel as a newc cpio archive (the format
// kernel/cpio.go reads). This small writer replaces u-root's cpio package,
// which brought u-root's ls, go-humanize and uio into every vmm binary and
// their package inits into every vmm run (issue 14).

const (
	cpioDir     = 0o040000
	cpioSymlink = 0o120000
	cpioRegular = 0o100000
	cpioTrailer = "TRAILER!!!"
)

// cpioInfo is one record's metadata.
type cpioInfo struct {
	Name  string
	Ino   uint64
	Mode  uint64
	NLink uint64
	MTime uint64
}

// cpioWriter writes newc records: a 110-byte header in upper-case hex,
// the NUL-terminated name and the data, each padded to 4 bytes.
type cpioWriter struct{ buf *bytes.Buffer }

func (w cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w cpioWriter) write(i cpioInfo, data []byte) error {
	fields := []uint64{i.Ino, i.Mode, 0, 0, i.NLink, i.MTime, uint64(len(data)), 0, 0, 0, 0, uint64(len(i.Name)) + 1, 0}
	w.buf.WriteString("070701")
	for _, f := range fields {
		if f > 0xffffffff {
			return fmt.Errorf("cpio: %s: a header field (%d) does not fit in 32 bits", i.Name, f)
		}
		fmt.Fprintf(w.buf, "%08X", f)
	}
	w.buf.WriteString(i.Name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
	return nil
}

func (w cpioWriter) trailer() error { return w.write(cpioInfo{Name: cpioTrailer}, nil) }
