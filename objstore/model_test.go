package objstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"testing"
)

// readAll reads a whole object in one transaction.
func readAll(tx *Tx, name string) ([]byte, error) {
	o, err := tx.Open(name)
	if err != nil {
		return nil, err
	}
	b := make([]byte, o.Size())
	n, err := o.ReadAt(b, 0)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	if len(b) == 0 {
		err = nil
	}
	return b[:n], err
}

// snapshot returns every object's content.
func snapshot(s *Store) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.View(func(tx *Tx) error {
		var names []string
		if err := tx.List("", func(oi ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
			return err
		}
		for _, n := range names {
			b, err := readAll(tx, n)
			if err != nil {
				return err
			}
			out[n] = b
		}
		if uint64(len(names)) != tx.Count() {
			return fmt.Errorf("count %d, listed %d", tx.Count(), len(names))
		}
		return nil
	})
	return out, err
}

func equalState(a, b map[string][]byte) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d objects, want %d", len(a), len(b))
	}
	for k, v := range b {
		w, ok := a[k]
		if !ok {
			return fmt.Errorf("object %q missing", k)
		}
		if !bytes.Equal(v, w) {
			return fmt.Errorf("object %q: content differs (len %d, want %d)", k, len(w), len(v))
		}
	}
	return nil
}

func copyModel(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = append([]byte(nil), v...)
	}
	return c
}

// op applies one random operation to tx and to model.
func randomOp(t testing.TB, rng *rand.Rand, tx *Tx, model map[string][]byte, maxSize int) error {
	names := make([]string, 0, len(model))
	for k := range model {
		names = append(names, k)
	}
	sort.Strings(names)
	pick := func() string {
		if len(names) == 0 {
			return ""
		}
		return names[rng.IntN(len(names))]
	}
	fresh := func() string { return fmt.Sprintf("obj/%03d", rng.IntN(60)) }
	switch k := rng.IntN(10); {
	case k <= 2 || len(names) == 0: // create or overwrite
		name := fresh()
		o, err := tx.Open(name)
		if err != nil {
			if o, err = tx.Create(name); err != nil {
				return err
			}
			model[name] = nil
		}
		off := rng.IntN(maxSize)
		if rng.IntN(3) == 0 {
			off = off / BlockSize * BlockSize
		}
		n := 1 + rng.IntN(maxSize/2)
		if rng.IntN(4) == 0 {
			n = BlockSize * (1 + rng.IntN(3))
		}
		data := randBytes(rng, n)
		if _, err := o.WriteAt(data, int64(off)); err != nil {
			return err
		}
		cur := model[name]
		if len(cur) < off+n {
			cur = append(cur, make([]byte, off+n-len(cur))...)
		}
		copy(cur[off:], data)
		model[name] = cur
	case k == 3: // truncate
		name := pick()
		o, err := tx.Open(name)
		if err != nil {
			return err
		}
		size := rng.IntN(maxSize + BlockSize)
		if err := o.Truncate(int64(size)); err != nil {
			return err
		}
		cur := model[name]
		if size <= len(cur) {
			cur = cur[:size]
		} else {
			cur = append(cur, make([]byte, size-len(cur))...)
		}
		model[name] = cur
	case k == 4 || k == 5: // clone
		src, dst := pick(), fresh()
		err := tx.Clone(src, dst)
		if _, exists := model[dst]; exists {
			if !errors.Is(err, ErrExists) {
				return fmt.Errorf("clone onto existing %q: %v", dst, err)
			}
			return nil
		}
		if err != nil {
			return err
		}
		model[dst] = append([]byte(nil), model[src]...)
	case k == 6: // delete
		name := pick()
		if err := tx.Delete(name); err != nil {
			return err
		}
		delete(model, name)
	case k == 7: // rename
		src, dst := pick(), fresh()
		err := tx.Rename(src, dst)
		if _, exists := model[dst]; exists && dst != src {
			if !errors.Is(err, ErrExists) {
				return fmt.Errorf("rename onto existing %q: %v", dst, err)
			}
			return nil
		}
		if err != nil {
			return err
		}
		v := model[src]
		delete(model, src)
		model[dst] = v
	default: // read back something inside the transaction
		name := pick()
		got, err := readAll(tx, name)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, model[name]) {
			return fmt.Errorf("in-transaction read of %q differs", name)
		}
	}
	return nil
}

func TestModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			dev := NewMemDevice(nil)
			s, err := Create(dev)
			if err != nil {
				t.Fatal(err)
			}
			model := map[string][]byte{}
			maxSize := 3 * BlockSize
			if seed%2 == 0 {
				maxSize = 300 * BlockSize // map height 2
			}
			txns := 150
			if raceEnabled {
				txns = 30 // 15x slower under the race detector; TestConcurrentReaders is the race test
			}
			for i := 0; i < txns; i++ {
				tx, err := s.Begin(true)
				if err != nil {
					t.Fatal(err)
				}
				work := copyModel(model)
				for j := 0; j < 1+rng.IntN(8); j++ {
					if err := randomOp(t, rng, tx, work, maxSize); err != nil {
						t.Fatalf("txn %d op %d: %v", i, j, err)
					}
				}
				if rng.IntN(5) == 0 {
					tx.Abort()
				} else {
					if err := tx.Commit(); err != nil {
						t.Fatal(err)
					}
					model = work
				}
				if rng.IntN(10) == 0 { // reopen
					if s, err = Open(dev); err != nil {
						t.Fatal(err)
					}
				}
				got, err := snapshot(s)
				if err != nil {
					t.Fatalf("txn %d: %v", i, err)
				}
				if err := equalState(got, model); err != nil {
					t.Fatalf("txn %d: %v", i, err)
				}
				if i%10 == 9 {
					if r := Fsck(dev); !r.OK() {
						t.Fatalf("txn %d: fsck:\n%s", i, r)
					}
				}
			}
			if r := Fsck(dev); !r.OK() {
				t.Fatalf("fsck:\n%s", r)
			}
		})
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}
