package guest

import (
	"errors"
	"testing"
)

// Natively the call fails, saying the program is not on Amber: Linux has
// no system call of Amber's number.
func TestSnapshotNative(t *testing.T) {
	restored, err := Snapshot("ready")
	if !errors.Is(err, ErrNotAmber) || restored {
		t.Fatalf("Snapshot natively: %v, %v; want false and ErrNotAmber", restored, err)
	}
	if _, err := Snapshot(""); err == nil || errors.Is(err, ErrNotAmber) {
		t.Fatalf("Snapshot with a bad name: %v; want the name refused", err)
	}
}
