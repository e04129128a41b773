package elfnote

import (
	"encoding/binary"
	"strings"
	"testing"
)

func note(b []byte, name string, typ uint32, desc []byte, align int) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(len(name)+1))
	b = le.AppendUint32(b, uint32(len(desc)))
	b = le.AppendUint32(b, typ)
	pad := func() {
		for len(b)%align != 0 {
			b = append(b, 0)
		}
	}
	b = append(append(b, name...), 0)
	pad()
	b = append(b, desc...)
	pad()
	return b
}

func TestParse(t *testing.T) {
	for _, align := range []int{4, 8} {
		buf := note(note(nil, "Xen", 18, []byte{1, 2, 3, 4}, align), "Amber", 1, []byte("hello"), align)
		ns, err := Parse(buf, uint64(align))
		if err != nil || len(ns) != 2 || ns[0].Name != "Xen" || ns[0].Type != 18 || string(ns[1].Desc) != "hello" || ns[1].Name != "Amber" {
			t.Fatalf("align %d: %+v, %v", align, ns, err)
		}
		// The last note's padding may be missing.
		if _, err := Parse(buf[:len(buf)-len(buf)%align-1], uint64(align)); err != nil && align == 4 {
			t.Errorf("align %d without trailing padding: %v", align, err)
		}
	}
	buf := note(nil, "Amber", 1, []byte("hello"), 4)
	for _, c := range []struct {
		b    []byte
		want string
	}{
		{buf[:8], "header at offset 0x0 truncated"},
		{buf[:16], "truncated: name 6 and descriptor 5 bytes need 25"},
		{append(buf, 1, 2, 3), "header at offset 0x1c truncated"},
	} {
		if _, err := Parse(c.b, 4); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(% x) = %v, want %q", c.b, err, c.want)
		}
	}
	if Align(8) != 8 || Align(4) != 4 || Align(1) != 4 || Align(0x1000) != 4 {
		t.Error("Align")
	}
}
