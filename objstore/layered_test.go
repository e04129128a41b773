package objstore

import (
	"bytes"
	"testing"
)

// TestLayeredCrash is TestCrash on clone stores: each is layered over a
// base store (LayeredDevice), whose objects it changes, clones and
// deletes. At every crash point the clone holds its last committed state
// (or the one being committed), Fsck is clean, and no block of the base
// was written.
func TestLayeredCrash(t *testing.T) {
	txns := 120
	if testing.Short() || raceEnabled {
		txns = 30
	}
	total := 0
	for seed := uint64(1); seed <= 3; seed++ {
		base, model := buildStore(t, seed, true)
		total += crashWorkloadOn(t, seed+100, txns, 4, base.Bytes(), model)
	}
	t.Logf("%d crash points checked", total)
}

// TestLayeredBase checks that a clone store allocates only past its base,
// that the base is unchanged and still fsck-clean, and that two clones of
// one base diverge independently.
func TestLayeredBase(t *testing.T) {
	baseDev, model := buildStore(t, 9, true)
	base := baseDev.Bytes()
	var names []string
	for n := range model {
		names = append(names, n)
	}
	if len(names) == 0 {
		t.Fatal("empty base")
	}
	var clones [2]*recDev
	for i := range clones {
		d := &recDev{base: uint64(len(base) / BlockSize)}
		d.data = append([]byte(nil), base...)
		s, err := Open(d)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Update(func(tx *Tx) error {
			o, err := tx.Open(names[0])
			if err != nil {
				return err
			}
			if _, err := o.WriteAt([]byte{byte('A' + i)}, 0); err != nil {
				return err
			}
			if err := tx.Clone(names[0], "copy"); err != nil {
				return err
			}
			return tx.Delete(names[len(names)-1])
		})
		if err != nil {
			t.Fatalf("clone %d: %v", i, err)
		}
		if r := Fsck(d); !r.OK() {
			t.Fatalf("clone %d: fsck: %s", i, r)
		}
		clones[i] = d
	}
	if !bytes.Equal(clones[0].Bytes()[firstBlock*BlockSize:len(base)], base[firstBlock*BlockSize:]) {
		t.Fatal("the clone wrote into its base")
	}
	if r := Fsck(NewMemDevice(base)); !r.OK() {
		t.Fatalf("base: fsck: %s", r)
	}
	for i, d := range clones {
		s, err := Open(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := snapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		if c := got[names[0]]; len(c) == 0 || c[0] != byte('A'+i) {
			t.Errorf("clone %d: %s starts with %q, want %q", i, names[0], c[:min(len(c), 1)], string(rune('A'+i)))
		}
		if !bytes.Equal(got["copy"], got[names[0]]) {
			t.Errorf("clone %d: the copy differs", i)
		}
		if len(names) > 1 {
			if _, ok := got[names[len(names)-1]]; ok {
				t.Errorf("clone %d: deleted object still there", i)
			}
		}
		for _, n := range names[1 : len(names)-1] {
			if !bytes.Equal(got[n], model[n]) {
				t.Errorf("clone %d: %s differs from the base", i, n)
			}
		}
	}
}
