package objstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// recDev records every write, flush and growth so that the state after a
// crash at any point can be rebuilt.
type recDev struct {
	MemDevice
	log  []recOp
	base uint64 // blocks [2, base) are a read-only base's (LayeredDevice)
}

func (d *recDev) BaseBlocks() uint64 { return d.base }

type recOp struct {
	flush bool
	grow  int64
	off   int64
	data  []byte
}

func (d *recDev) WriteAt(p []byte, off int64) (int, error) {
	if b := uint64(off / BlockSize); b >= firstBlock && b < d.base {
		return 0, fmt.Errorf("write to block %d of the read-only base", b)
	}
	d.log = append(d.log, recOp{off: off, data: append([]byte(nil), p...)})
	return d.MemDevice.WriteAt(p, off)
}

func (d *recDev) Flush() error {
	d.log = append(d.log, recOp{flush: true})
	return d.MemDevice.Flush()
}

func (d *recDev) Grow(size int64) error {
	d.log = append(d.log, recOp{grow: size})
	return d.MemDevice.Grow(size)
}

type commitRec struct {
	before, after int // log positions around Commit
	state         map[string][]byte
}

// TestCrash runs workloads of puts, overwrites, truncates, clones, deletes
// and renames, then for every prefix of the device operations, and several
// random choices of which unflushed writes survive (dropped, reordered,
// torn at 512 bytes), rebuilds the device, opens it and checks that it
// holds exactly the last committed state (or the one being committed) and
// that Fsck is clean.
func TestCrash(t *testing.T) {
	seeds, txns, perPoint := 4, 250, 6
	if testing.Short() || raceEnabled {
		txns = 40 // the race detector makes this 20x slower; TestConcurrentReaders is the race test
	}
	total := 0
	for seed := 1; seed <= seeds; seed++ {
		total += crashWorkload(t, uint64(seed), txns, perPoint)
	}
	t.Logf("%d crash points checked", total)
	if !testing.Short() && !raceEnabled && total < 10000 {
		t.Fatalf("only %d crash points", total)
	}
}

func crashWorkload(t *testing.T, seed uint64, txns, perPoint int) int {
	return crashWorkloadOn(t, seed, txns, perPoint, nil, map[string][]byte{})
}

// crashWorkloadOn runs the workload on a new store or, when base is not
// nil, on a clone store layered over base (a store image holding
// baseModel): the clone's device starts as base, whose blocks past the
// superblocks it must never write.
func crashWorkloadOn(t *testing.T, seed uint64, txns, perPoint int, base []byte, baseModel map[string][]byte) int {
	rng := rand.New(rand.NewPCG(seed, 7))
	dev := &recDev{}
	var s *Store
	var err error
	if base == nil {
		s, err = Create(dev)
	} else {
		dev.data = append([]byte(nil), base...)
		dev.base = uint64(len(base) / BlockSize)
		s, err = Open(dev)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := len(dev.log)
	model := copyModel(baseModel)
	commits := []commitRec{{before: start, after: start, state: copyModel(model)}}
	for i := 0; i < txns; i++ {
		tx, err := s.Begin(true)
		if err != nil {
			t.Fatal(err)
		}
		work := copyModel(model)
		maxSize := 3 * BlockSize
		if rng.IntN(4) == 0 {
			maxSize = 40 * BlockSize // runs written straight to the device
		}
		for j := 0; j < 1+rng.IntN(4); j++ {
			if err := randomOp(t, rng, tx, work, maxSize); err != nil {
				t.Fatal(err)
			}
		}
		if len(work) > 12 { // keep the store small
			for name := range work {
				if err := tx.Delete(name); err != nil {
					t.Fatal(err)
				}
				delete(work, name)
				if len(work) <= 8 {
					break
				}
			}
		}
		if rng.IntN(6) == 0 {
			tx.Abort()
			continue
		}
		before := len(dev.log)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		model = work
		commits = append(commits, commitRec{before, len(dev.log), copyModel(model)})
	}

	// Replay.
	image := append([]byte(nil), base...)
	var pending []recOp
	apply := func(op recOp) {
		switch {
		case op.grow > 0:
			if op.grow > int64(len(image)) {
				image = append(image, make([]byte, op.grow-int64(len(image)))...)
			}
		case op.flush:
			for _, w := range pending {
				copy(image[w.off:], w.data)
			}
			pending = pending[:0]
		default:
			pending = append(pending, op)
		}
	}
	for _, op := range dev.log[:start] {
		apply(op)
	}
	points := 0
	ci := 0
	type saved struct {
		off  int64
		data []byte
	}
	for k := start; k <= len(dev.log); k++ {
		for ci+1 < len(commits) && commits[ci+1].after <= k {
			ci++
		}
		ok := []map[string][]byte{commits[ci].state}
		if ci+1 < len(commits) && commits[ci+1].before < k {
			ok = append(ok, commits[ci+1].state)
		}
		for r := 0; r < perPoint; r++ {
			// Keep a random subset of the pending writes, in random order,
			// some torn at 512-byte sector boundaries.
			var undo []saved
			order := rng.Perm(len(pending))
			for _, i := range order {
				w := pending[i]
				mode := rng.IntN(3)
				if r == 0 {
					mode = 1 // all writes land, in a random order
				}
				if mode == 0 {
					continue
				}
				for sec := 0; sec < len(w.data); sec += 512 {
					if mode == 2 && rng.IntN(2) == 0 {
						continue
					}
					end := min(sec+512, len(w.data))
					off := w.off + int64(sec)
					undo = append(undo, saved{off, append([]byte(nil), image[off:off+int64(end-sec)]...)})
					copy(image[off:], w.data[sec:end])
				}
			}
			if base != nil && !bytes.Equal(image[firstBlock*BlockSize:len(base)], base[firstBlock*BlockSize:]) {
				t.Fatalf("seed %d: the clone changed its base's blocks", seed)
			}
			if err := checkCrashImage(image, ok); err != nil {
				t.Fatalf("seed %d, crash before op %d of %d (variant %d, %d pending writes): %v", seed, k, len(dev.log), r, len(pending), err)
			}
			points++
			for i := len(undo) - 1; i >= 0; i-- {
				copy(image[undo[i].off:], undo[i].data)
			}
		}
		if k < len(dev.log) {
			apply(dev.log[k])
		}
	}
	return points
}

func checkCrashImage(image []byte, ok []map[string][]byte) error {
	dev := &MemDevice{data: image}
	s, err := Open(dev)
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	got, err := snapshot(s)
	if err != nil {
		return fmt.Errorf("read: %v", err)
	}
	var errs []error
	for _, want := range ok {
		err := equalState(got, want)
		if err == nil {
			errs = nil
			break
		}
		errs = append(errs, err)
	}
	if errs != nil {
		return fmt.Errorf("state matches no acceptable state: %v", errs)
	}
	if r := Fsck(dev); !r.OK() {
		return fmt.Errorf("fsck: %s", r)
	}
	return nil
}
