package objstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Store is an open object store. It is safe for concurrent use: any number
// of read transactions may run while one write transaction works.
type Store struct {
	dev      BlockDevice
	fallback *Fallback // set by Open when one superblock was invalid

	wmu sync.Mutex // held by the write transaction

	mu        sync.Mutex
	meta      meta                // latest committed state
	readers   map[uint64]int      // txid -> open read transactions
	pending   map[uint64][]uint64 // txid that freed -> blocks not yet reusable
	pendingB  map[uint64]uint64   // block -> txid that freed it
	allocHint uint64
	floor     uint64   // the first block the allocator may use (LayeredDevice)
	free      []uint64 // blocks released lately, a hint for the allocator (LIFO)
	closed    bool
	failed    bool
	scratch   []byte // the writer's buffer for merging block writes

	cmu sync.Mutex
	// Verified metadata blocks by block number. The checksum in the
	// pointer is not a safe key on its own: CRC32C is linear, and
	// successive versions of a node that differ only in child checksums
	// collide far more often than random data would. So an entry is also
	// dropped whenever its block is allocated again.
	cache map[uint64]cacheEntry
}

type cacheEntry struct {
	crc uint32
	b   []byte
}

func (s *Store) invalidate(blk uint64) {
	s.cmu.Lock()
	delete(s.cache, blk)
	s.cmu.Unlock()
}

// Create makes a new, empty store on dev, overwriting what was there.
func Create(dev BlockDevice) (*Store, error) {
	if dev.Size() < firstBlock*BlockSize {
		if err := dev.Grow(firstBlock * BlockSize); err != nil {
			return nil, err
		}
	}
	m := meta{txid: 0, nblocks: firstBlock, freeHint: firstBlock}
	if _, err := dev.WriteAt(m.encode(), 0); err != nil {
		return nil, err
	}
	m.txid = 1
	if _, err := dev.WriteAt(m.encode(), BlockSize); err != nil {
		return nil, err
	}
	if err := dev.Flush(); err != nil {
		return nil, err
	}
	return Open(dev)
}

// readSuper returns the two superblocks' decoded states and errors.
func readSuper(dev BlockDevice) (ms [2]meta, errs [2]error) {
	buf := make([]byte, BlockSize)
	for i := 0; i < 2; i++ {
		if _, err := dev.ReadAt(buf, int64(i)*BlockSize); err != nil {
			errs[i] = err
			continue
		}
		ms[i], errs[i] = decodeMeta(buf)
		if errs[i] == nil && ms[i].txid%2 != uint64(i) {
			errs[i] = fmt.Errorf("txid %d in slot %d", ms[i].txid, i)
		}
	}
	return
}

// Fallback says that Open ignored one of the two superblocks because it
// failed its checks (a checksum mismatch, a torn write, a device too short
// for it) and which committed state the store uses instead. When the
// rejected superblock held the newest commit, the store shows the one
// before it: that commit's changes are not visible. The next commit
// overwrites the rejected superblock.
type Fallback struct {
	Slot   int   // the rejected superblock: 0 or 1
	Reason error // why it was rejected
	// Claimed is the transaction the rejected superblock names, when
	// ClaimKnown: its txid field (unverified when its checksum failed)
	// is one next to Using, of its slot's parity. Otherwise nothing can
	// be said of what it held.
	Claimed    uint64
	ClaimKnown bool
	Using      uint64 // the transaction in use: the other superblock's
}

// NewestLost reports whether the rejected superblock held, or may have
// held, a commit newer than the one in use.
func (f *Fallback) NewestLost() bool { return !f.ClaimKnown || f.Claimed > f.Using }

func (f *Fallback) String() string {
	switch {
	case !f.ClaimKnown:
		return fmt.Sprintf("superblock %d is unreadable (%v) and may have held the newest commit; using transaction %d from superblock %d",
			f.Slot, f.Reason, f.Using, 1-f.Slot)
	case f.Claimed > f.Using:
		return fmt.Sprintf("the newest commit, transaction %d, is unreadable (superblock %d: %v); using the previous commit, transaction %d",
			f.Claimed, f.Slot, f.Reason, f.Using)
	default:
		return fmt.Sprintf("the older superblock (%d, transaction %d) is invalid (%v); the newest commit, transaction %d, is intact",
			f.Slot, f.Claimed, f.Reason, f.Using)
	}
}

// pickSuper returns the newest valid superblock and, when the other one
// was rejected, what Open fell back from.
func pickSuper(dev BlockDevice) (meta, *Fallback, error) {
	ms, errs := readSuper(dev)
	best := -1
	for i := 0; i < 2; i++ {
		if errs[i] != nil {
			continue
		}
		if ms[i].nblocks*BlockSize > uint64(dev.Size()) {
			errs[i] = fmt.Errorf("device is %d bytes, superblock needs %d", dev.Size(), ms[i].nblocks*BlockSize)
			continue
		}
		if best < 0 || ms[i].txid > ms[best].txid {
			best = i
		}
	}
	if best < 0 {
		return meta{}, nil, fmt.Errorf("%w: slot 0: %v; slot 1: %v", ErrNotStore, errs[0], errs[1])
	}
	other := 1 - best
	if errs[other] == nil {
		return ms[best], nil, nil
	}
	fb := &Fallback{Slot: other, Reason: errs[other], Using: ms[best].txid}
	// What the rejected block says it held, if it still looks like a
	// superblock of its slot next to the one in use.
	buf := make([]byte, BlockSize)
	if _, err := dev.ReadAt(buf, int64(other)*BlockSize); err == nil && string(buf[:8]) == metaMagic {
		t := binary.LittleEndian.Uint64(buf[16:])
		if t%2 == uint64(other) && (t == fb.Using+1 || t+1 == fb.Using) {
			fb.Claimed, fb.ClaimKnown = t, true
		}
	}
	return ms[best], fb, nil
}

// Open opens the store on dev. It reads only the two superblocks. When one
// of them is invalid it uses the other; Fallback then says so.
func Open(dev BlockDevice) (*Store, error) {
	m, fb, err := pickSuper(dev)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dev:       dev,
		meta:      m,
		fallback:  fb,
		readers:   map[uint64]int{},
		pending:   map[uint64][]uint64{},
		pendingB:  map[uint64]uint64{},
		allocHint: m.freeHint,
		cache:     map[uint64]cacheEntry{},
	}
	s.floor = firstBlock
	if l, ok := dev.(LayeredDevice); ok && l.BaseBlocks() > s.floor {
		s.floor = l.BaseBlocks()
	}
	if s.allocHint < s.floor {
		s.allocHint = s.floor
	}
	return s, nil
}

// Fallback reports what Open found when one superblock was invalid, nil
// when both were valid. It describes the store as opened: the first
// commit since then overwrites the rejected superblock.
func (s *Store) Fallback() *Fallback { return s.fallback }

// Close closes the store. Open transactions must be finished first. It
// does not close the device.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Device returns the device the store lives on.
func (s *Store) Device() BlockDevice { return s.dev }

// TxID returns the id of the latest committed transaction.
func (s *Store) TxID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta.txid
}

// Begin starts a transaction. A write transaction waits for the previous
// one to finish; read transactions never wait.
func (s *Store) Begin(writable bool) (*Tx, error) {
	if writable {
		s.wmu.Lock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.failed {
		if writable {
			s.wmu.Unlock()
		}
		if s.closed {
			return nil, ErrClosed
		}
		return nil, ErrFailed
	}
	tx := &Tx{s: s, m: s.meta, writable: writable}
	if writable {
		s.releasePending()
		tx.initWriter(s.allocHint)
		tx.free = s.free
	} else {
		s.readers[tx.m.txid]++
	}
	return tx, nil
}

// View runs fn in a read transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	tx, err := s.Begin(false)
	if err != nil {
		return err
	}
	defer tx.Abort()
	return fn(tx)
}

// Update runs fn in a write transaction and commits it if fn returns nil.
func (s *Store) Update(fn func(tx *Tx) error) error {
	tx, err := s.Begin(true)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Abort()
		return err
	}
	return tx.Commit()
}

// releasePending makes blocks freed by committed transactions reusable once
// no reader can still reach them. Called with s.mu held.
func (s *Store) releasePending() {
	if len(s.pending) == 0 {
		return
	}
	min := ^uint64(0)
	for t := range s.readers {
		if t < min {
			min = t
		}
	}
	for t, blks := range s.pending {
		// A block freed by transaction t is reachable from states < t.
		if t <= min {
			for _, b := range blks {
				delete(s.pendingB, b)
			}
			delete(s.pending, t)
			// Reuse them first, lowest first: they are already written (no
			// new file extents), probably cached, and often contiguous.
			if len(s.free)+len(blks) <= maxFreeList {
				sort.Slice(blks, func(i, j int) bool { return blks[i] > blks[j] })
				s.free = append(s.free, blks...)
			}
		}
	}
}

func (s *Store) endRead(txid uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readers[txid]--; s.readers[txid] <= 0 {
		delete(s.readers, txid)
	}
}

// readBlock reads and verifies one metadata block, through the cache.
func (s *Store) readBlock(p ptr, nocache bool) ([]byte, error) {
	if !nocache {
		s.cmu.Lock()
		e, ok := s.cache[p.blk]
		s.cmu.Unlock()
		if ok && e.crc == p.crc {
			return e.b, nil
		}
	}
	b := make([]byte, BlockSize)
	if err := s.readRaw(b, p.blk); err != nil {
		return nil, err
	}
	if checksum(b) != p.crc {
		return nil, errChecksum
	}
	if !nocache {
		s.cmu.Lock()
		if len(s.cache) >= cacheBlocks {
			n := 0
			for k := range s.cache {
				delete(s.cache, k)
				if n++; n > cacheBlocks/8 {
					break
				}
			}
		}
		s.cache[p.blk] = cacheEntry{p.crc, b}
		s.cmu.Unlock()
	}
	return b, nil
}

var errChecksum = errors.New("checksum mismatch")

func (s *Store) readRaw(b []byte, blk uint64) error {
	off := int64(blk) * BlockSize
	if blk < firstBlock || off < 0 || off+int64(len(b)) > s.dev.Size() {
		return fmt.Errorf("block %d out of range", blk)
	}
	_, err := s.dev.ReadAt(b, off)
	return err
}
