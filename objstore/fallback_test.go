package objstore

import (
	"strings"
	"testing"
)

// A store whose newest superblock is damaged opens at the previous commit;
// Fallback says so, and which commit is in use.
func TestFallback(t *testing.T) {
	dev := NewMemDevice(nil)
	s, err := Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := s.Update(func(tx *Tx) error { _, err := tx.Create(name); return err }); err != nil {
			t.Fatal(err)
		}
	}
	newest := s.TxID() // "b" created; the other slot holds "a" only
	if s.Fallback() != nil {
		t.Fatalf("fresh store: Fallback %v", s.Fallback())
	}
	clean := dev.Bytes()
	reopen := func(img []byte) (*Store, []string) {
		t.Helper()
		s, err := Open(NewMemDevice(img))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		s.View(func(tx *Tx) error {
			return tx.List("", func(oi ObjectInfo) error { names = append(names, oi.Name); return nil })
		})
		return s, names
	}
	if s, _ := reopen(clean); s.Fallback() != nil {
		t.Fatalf("clean store: Fallback %v", s.Fallback())
	}

	// One flipped bit in the newest superblock's txid: checksum mismatch.
	img := append([]byte(nil), clean...)
	slot := int(newest % 2)
	img[slot*BlockSize+80] ^= 1 // the checksum itself
	s2, names := reopen(img)
	fb := s2.Fallback()
	if fb == nil {
		t.Fatal("newest superblock corrupt: no Fallback")
	}
	if fb.Slot != slot || !fb.ClaimKnown || fb.Claimed != newest || fb.Using != newest-1 || !fb.NewestLost() || s2.TxID() != newest-1 {
		t.Fatalf("Fallback %+v, TxID %d; newest was %d in slot %d", fb, s2.TxID(), newest, slot)
	}
	if len(names) != 1 || names[0] != "a" {
		t.Fatalf("previous commit shows %v, want [a]", names)
	}
	msg := fb.String()
	for _, want := range []string{"newest commit", "unreadable", "checksum mismatch", "previous commit"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Fallback.String() = %q lacks %q", msg, want)
		}
	}
	// The next commit overwrites the rejected superblock.
	if err := s2.Update(func(tx *Tx) error { _, err := tx.Create("c"); return err }); err != nil {
		t.Fatal(err)
	}
	if s3, err := Open(s2.Device()); err != nil || s3.Fallback() != nil {
		t.Fatalf("after a commit: %v, Fallback %v", err, s3.Fallback())
	}

	// A wiped newest superblock: nothing can be said of what it held.
	img = append([]byte(nil), clean...)
	clear(img[slot*BlockSize : (slot+1)*BlockSize])
	s2, _ = reopen(img)
	if fb := s2.Fallback(); fb == nil || fb.ClaimKnown || !fb.NewestLost() || fb.Using != newest-1 || !strings.Contains(fb.String(), "may have held the newest commit") {
		t.Fatalf("wiped newest superblock: Fallback %+v", fb)
	}

	// A damaged older superblock: the newest commit is intact.
	img = append([]byte(nil), clean...)
	img[(1-slot)*BlockSize+80] ^= 1
	s2, names = reopen(img)
	if fb := s2.Fallback(); fb == nil || !fb.ClaimKnown || fb.NewestLost() || fb.Claimed != newest-1 || fb.Using != newest || len(names) != 2 ||
		!strings.Contains(fb.String(), "intact") {
		t.Fatalf("older superblock corrupt: Fallback %+v, names %v", fb, names)
	}
}
