package filedev_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"golang.org/x/sys/unix"
)

func put(t *testing.T, s *objstore.Store, name string, data []byte, off int64) {
	t.Helper()
	err := s.Update(func(tx *objstore.Tx) error {
		o, err := tx.Open(name)
		if errors.Is(err, objstore.ErrNotFound) {
			o, err = tx.Create(name)
		}
		if err != nil {
			return err
		}
		_, err = o.WriteAt(data, off)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s *objstore.Store, name string) []byte {
	t.Helper()
	var b []byte
	err := s.View(func(tx *objstore.Tx) error {
		o, err := tx.Open(name)
		if err != nil {
			return err
		}
		b = make([]byte, o.Size())
		_, err = o.ReadAt(b, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openStore(t *testing.T, path string, o filedev.Options) (*filedev.File, *objstore.Store) {
	t.Helper()
	d, err := filedev.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	return d, s
}

// TestOverlay: two clone stores of one base change their copies of an
// object independently; the base file is not changed, stays fsck-clean,
// cannot be opened for writing while a clone is open, and a clone of a
// base that committed since is refused. Unchanged blocks of a clone map
// from the base's file.
func TestOverlay(t *testing.T) {
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.store")
	d, err := filedev.Open(basePath, filedev.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := objstore.Create(d)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("base"), 1024)
	for i := int64(0); i < 8; i++ {
		put(t, s, "obj", page, i*4096)
	}
	put(t, s, "other", []byte("kept"), 0)
	d.Close()
	before, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}

	clones := []string{filepath.Join(dir, "c1.store"), filepath.Join(dir, "c2.store")}
	var devs []*filedev.File
	for i, c := range clones {
		if err := filedev.CreateOverlay(c, basePath); err != nil {
			t.Fatal(err)
		}
		cd, cs := openStore(t, c, filedev.Options{})
		if cd.Base() != basePath {
			t.Errorf("Base() = %q, want %q", cd.Base(), basePath)
		}
		put(t, cs, "obj", []byte{byte('1' + i)}, 4096)
		if err := cs.Update(func(tx *objstore.Tx) error { return tx.Clone("obj", "copy") }); err != nil {
			t.Fatal(err)
		}
		if r := objstore.Fsck(cd); !r.OK() {
			t.Fatalf("clone %d: fsck: %s", i, r)
		}
		devs = append(devs, cd)
	}
	if err := filedev.CreateOverlay(clones[0], basePath); !errors.Is(err, os.ErrExist) {
		t.Errorf("CreateOverlay over an existing file: %v", err)
	}
	// The base is shared-locked while clones are open.
	if _, err := filedev.Open(basePath, filedev.Options{}); err == nil {
		t.Fatal("the base opened for writing while clones have it open")
	} else if _, ok := err.(*filedev.LockedError); !ok {
		t.Fatalf("opening the base for writing: %v", err)
	}
	for _, cd := range devs {
		cd.Close()
	}
	for i, c := range clones {
		cd, cs := openStore(t, c, filedev.Options{ReadOnly: true})
		got := get(t, cs, "obj")
		want := append(append(append([]byte(nil), page...), byte('1'+i)), page[1:]...)
		want = append(want, bytes.Repeat(page, 6)...)
		if !bytes.Equal(got, want) {
			t.Errorf("clone %d: obj differs", i)
		}
		if g := get(t, cs, "other"); string(g) != "kept" {
			t.Errorf("clone %d: other = %q", i, g)
		}
		// Block 0 of obj is still the base's: it maps from the base file.
		err := cs.View(func(tx *objstore.Tx) error {
			o, err := tx.Open("obj")
			if err != nil {
				return err
			}
			ex, err := o.Extents()
			if err != nil {
				return err
			}
			fd, off, n := cd.MapRange(ex[0].Device, 4096)
			if n != 4096 {
				t.Errorf("MapRange length %d", n)
			}
			b := make([]byte, 4096)
			if _, err := unix.Pread(int(fd), b, off); err != nil {
				return err
			}
			if !bytes.Equal(b, page) {
				t.Errorf("clone %d: MapRange of the base's block reads other bytes", i)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cd.Close()
	}
	// A clone of a clone: reads through both, writes only its own file.
	cc := filepath.Join(dir, "cc.store")
	if err := filedev.CreateOverlay(cc, clones[1]); err != nil {
		t.Fatal(err)
	}
	c2before, err := os.ReadFile(clones[1])
	if err != nil {
		t.Fatal(err)
	}
	ccd, ccs := openStore(t, cc, filedev.Options{})
	put(t, ccs, "other", []byte("mine"), 0)
	if g := get(t, ccs, "obj"); g[4096] != '2' || g[0] != 'b' {
		t.Errorf("clone of a clone: obj starts %q, block 1 %q", g[:1], g[4096:4097])
	}
	if r := objstore.Fsck(ccd); !r.OK() {
		t.Fatalf("clone of a clone: fsck: %s", r)
	}
	ccd.Close()
	if c2after, _ := os.ReadFile(clones[1]); !bytes.Equal(c2before, c2after) {
		t.Error("the clone of a clone wrote into its base clone")
	}
	after, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the base file changed")
	}
	bd, bs := openStore(t, basePath, filedev.Options{})
	if r := objstore.Fsck(bd); !r.OK() {
		t.Fatalf("base: fsck: %s", r)
	}
	put(t, bs, "other", []byte("new!"), 0)
	bd.Close()
	if a2, _ := os.ReadFile(basePath); bytes.Equal(a2, after) {
		t.Fatal("base commit did not change the file")
	}
	var oe *filedev.OverlayError
	if _, err := filedev.Open(clones[0], filedev.Options{}); !errors.As(err, &oe) {
		t.Fatalf("a clone of a changed base opened: %v", err)
	}
}
