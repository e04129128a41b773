package objstore

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Tx is a transaction. A read transaction sees the state committed when it
// began, whatever writers do meanwhile. A write transaction's changes are
// visible only to itself until Commit. A Tx must not be used by several
// goroutines at once.
type Tx struct {
	s        *Store
	m        meta
	writable bool
	done     bool
	modified bool
	inodes   map[string]*inode

	// write transactions only
	cursor      uint64
	free        []uint64          // reusable blocks (hints: checked before use)
	wrapped     bool              // the allocator went back to the start of the device
	newBlocks   blockSet          // allocated by this transaction
	freed       blockSet          // committed blocks this transaction freed
	dirtyObj    map[uint64][]byte // object map nodes, by block
	dirtyData   map[uint64][]byte // data blocks not yet written to the device
	dataBytes   int
	names       map[uint64]*bnode // dirty names tree nodes, by block
	rcDirty     map[rcPos]*rcNode
	lastLeaf    *rcNode // the refcount leaf setRC used last
	lastLeafIdx uint64
	finalized   map[uint64]uint32
}

type rcPos struct {
	level uint32
	idx   uint64
}

type rcNode struct {
	buf []byte
	blk uint64
	crc uint32
}

func (tx *Tx) initWriter(hint uint64) {
	tx.cursor = hint
	tx.newBlocks = blockSet{}
	tx.freed = blockSet{}
	tx.dirtyObj = map[uint64][]byte{}
	tx.dirtyData = map[uint64][]byte{}
	tx.names = map[uint64]*bnode{}
	tx.rcDirty = map[rcPos]*rcNode{}
	tx.finalized = map[uint64]uint32{}
	tx.inodes = map[string]*inode{}
}

// ID returns the transaction's id: for a read transaction the id of the
// state it sees, for a write transaction that state's id.
func (tx *Tx) ID() uint64 { return tx.m.txid }

// Writable reports whether tx is a write transaction.
func (tx *Tx) Writable() bool { return tx.writable }

func (tx *Tx) check(write bool) error {
	if tx.done {
		return ErrTxDone
	}
	if write && !tx.writable {
		return ErrReadOnly
	}
	return nil
}

// Abort ends the transaction, discarding its changes. It is safe to call
// after Commit (it then does nothing).
func (tx *Tx) Abort() {
	if tx.done {
		return
	}
	tx.done = true
	if tx.writable {
		tx.s.wmu.Unlock()
	} else {
		tx.s.endRead(tx.m.txid)
	}
}

// Rollback is Abort.
func (tx *Tx) Rollback() { tx.Abort() }

// ---- refcounts ----

func (tx *Tx) rcNodePtr(level uint32, idx uint64) (ptr, []byte, error) {
	if n := tx.rcDirty[rcPos{level, idx}]; n != nil {
		return ptr{n.blk, n.crc}, n.buf, nil
	}
	h := tx.m.rcHeight
	if h == 0 || level >= h {
		return ptr{}, nil, nil
	}
	var p ptr
	if level == h-1 {
		if idx != 0 {
			return ptr{}, nil, nil
		}
		p = tx.m.rc
	} else {
		_, parent, err := tx.rcNodePtr(level+1, idx/fanout)
		if err != nil || parent == nil {
			return ptr{}, nil, err
		}
		p = getPtr(parent[(idx%fanout)*ptrSize:])
	}
	if p.blk == 0 {
		return p, nil, nil
	}
	b, err := tx.s.readBlock(p, false)
	if err != nil {
		return p, nil, &CorruptError{What: fmt.Sprintf("refcount node (level %d)", level), Block: p.blk, Reason: err.Error()}
	}
	return p, b, nil
}

func (tx *Tx) rcGet(b uint64) (uint32, error) {
	_, leaf, err := tx.rcNodePtr(0, b/rcPerLeaf)
	if err != nil || leaf == nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(leaf[(b%rcPerLeaf)*4:]), nil
}

func (tx *Tx) rcWritable(level uint32, idx uint64) (*rcNode, error) {
	pos := rcPos{level, idx}
	if n := tx.rcDirty[pos]; n != nil {
		return n, nil
	}
	h := tx.m.rcHeight
	var old ptr
	if level == h-1 {
		old = tx.m.rc
	} else {
		parent, err := tx.rcWritable(level+1, idx/fanout)
		if err != nil {
			return nil, err
		}
		// Dirtying the parent may have dirtied this node too (releasing the
		// parent's old block changes a refcount, perhaps in this leaf).
		if n := tx.rcDirty[pos]; n != nil {
			return n, nil
		}
		old = getPtr(parent.buf[(idx%fanout)*ptrSize:])
	}
	buf := make([]byte, BlockSize)
	if old.blk != 0 {
		b, err := tx.s.readBlock(old, false)
		if err != nil {
			return nil, &CorruptError{What: fmt.Sprintf("refcount node (level %d)", level), Block: old.blk, Reason: err.Error()}
		}
		copy(buf, b)
	}
	n := &rcNode{buf: buf}
	tx.rcDirty[pos] = n
	if old.blk != 0 {
		if err := tx.release(old.blk); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (tx *Tx) setRC(b uint64, v uint32) error {
	for rcCap(tx.m.rcHeight) <= b {
		if v == 0 {
			return nil
		}
		if tx.m.rcHeight >= maxRCHeight {
			return fmt.Errorf("objstore: device too large")
		}
		if tx.m.rcHeight == 0 {
			tx.m.rcHeight = 1
			tx.m.rc = ptr{}
			continue
		}
		n := &rcNode{buf: make([]byte, BlockSize)}
		if old := tx.rcDirty[rcPos{tx.m.rcHeight - 1, 0}]; old == nil {
			putPtr(n.buf, tx.m.rc)
		}
		tx.rcDirty[rcPos{tx.m.rcHeight, 0}] = n
		tx.m.rc = ptr{}
		tx.m.rcHeight++
	}
	leaf := tx.lastLeaf
	if leaf == nil || tx.lastLeafIdx != b/rcPerLeaf {
		var err error
		if leaf, err = tx.rcWritable(0, b/rcPerLeaf); err != nil {
			return err
		}
		// A dirty node stays the same *rcNode for the whole transaction.
		tx.lastLeaf, tx.lastLeafIdx = leaf, b/rcPerLeaf
	}
	binary.LittleEndian.PutUint32(leaf.buf[(b%rcPerLeaf)*4:], v)
	return nil
}

func (tx *Tx) incref(b uint64) error {
	rc, err := tx.rcGet(b)
	if err != nil {
		return err
	}
	if rc == 0 {
		return &CorruptError{What: "referenced block", Block: b, Reason: "refcount is zero"}
	}
	return tx.setRC(b, rc+1)
}

func (tx *Tx) isPending(b uint64) bool {
	if tx.freed.has(b) {
		return true
	}
	_, ok := tx.s.pendingB[b]
	return ok
}

// alloc returns a free block, marked used (refcount 1). Blocks released
// lately come first; then it is next-fit:
// the cursor moves forward across commits, so the blocks of one commit are
// mostly contiguous (few, large writes); at the end of the device it wraps
// around to reuse freed blocks, and grows the device only when a whole lap
// found none.
func (tx *Tx) alloc() (uint64, error) {
	for n := len(tx.free); n > 0; n = len(tx.free) {
		b := tx.free[n-1]
		tx.free = tx.free[:n-1]
		if b < tx.s.floor || b >= tx.m.nblocks || tx.isPending(b) {
			continue
		}
		rc, err := tx.rcGet(b)
		if err != nil {
			return 0, err
		}
		if rc == 0 {
			return b, tx.take(b)
		}
	}
	for {
		b := tx.cursor
		if b < tx.s.floor {
			b = tx.s.floor
		}
		if b >= tx.m.nblocks {
			need := int64(b+1) * BlockSize
			size := tx.s.dev.Size()
			if need > size && !tx.wrapped && tx.m.nblocks > tx.s.floor {
				tx.wrapped = true
				tx.cursor = tx.s.floor
				continue
			}
			if need > size {
				grow := size + size/4
				if grow < size+growChunk {
					grow = size + growChunk
				}
				if grow < need {
					grow = need
				}
				grow = (grow + BlockSize - 1) / BlockSize * BlockSize
				if err := tx.s.dev.Grow(grow); err != nil {
					return 0, err
				}
			}
			tx.m.nblocks = b + 1
			// Never used by a committed state, so not in the cache.
			tx.cursor = b + 1
			if err := tx.setRC(b, 1); err != nil {
				return 0, err
			}
			tx.newBlocks.add(b)
			return b, nil
		} else {
			_, leaf, err := tx.rcNodePtr(0, b/rcPerLeaf)
			if err != nil {
				return 0, err
			}
			base := b - b%rcPerLeaf
			end := base + rcPerLeaf
			if end > tx.m.nblocks {
				end = tx.m.nblocks
			}
			found := false
			for c := b; c < end; c++ {
				if (leaf == nil || binary.LittleEndian.Uint32(leaf[(c-base)*4:]) == 0) && !tx.isPending(c) {
					b, found = c, true
					break
				}
			}
			if !found {
				tx.cursor = end
				continue
			}
		}
		tx.cursor = b + 1
		return b, tx.take(b)
	}
}

func (tx *Tx) take(b uint64) error {
	if err := tx.setRC(b, 1); err != nil {
		return err
	}
	tx.newBlocks.add(b)
	tx.s.invalidate(b)
	return nil
}

// release marks a block whose last reference is gone as free. A block
// allocated by this transaction is reusable at once; a committed one only
// after the commit (and after the readers that may see it).
func (tx *Tx) release(b uint64) error {
	if err := tx.setRC(b, 0); err != nil {
		return err
	}
	if tx.newBlocks.has(b) {
		tx.newBlocks.del(b)
		tx.free = append(tx.free, b)
		delete(tx.dirtyObj, b)
		if d, ok := tx.dirtyData[b]; ok {
			tx.dataBytes -= len(d)
			delete(tx.dirtyData, b)
		}
		return nil
	}
	tx.freed.add(b)
	return nil
}

// ---- commit ----

// Commit makes the transaction's changes durable and visible. It returns
// only when they are durable (two device flushes). On error the store is
// as before the transaction. Commit of a read transaction just ends it.
func (tx *Tx) Commit() error {
	if tx.done {
		return ErrTxDone
	}
	if !tx.writable || !tx.modified {
		tx.Abort()
		return nil
	}
	defer tx.Abort()
	return tx.commit()
}

type blockWrite struct {
	blk uint64
	buf []byte
	crc uint32 // of metadata blocks, for the cache
}

func (tx *Tx) commit() error {
	s := tx.s
	// 1. Objects: finalize map trees, store inodes in the names tree.
	names := make([]string, 0, len(tx.inodes))
	for name, in := range tx.inodes {
		if in.dirty && !in.deleted {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		in := tx.inodes[name]
		if in.height > 0 {
			tx.finalizeMap(in.root[:], in.height, 1)
		}
		if err := tx.namesPut([]byte(name), in.encode()); err != nil {
			return err
		}
	}
	// 2. Names tree.
	var writes []blockWrite
	if tx.m.names.blk != 0 {
		if _, ok := tx.names[tx.m.names.blk]; ok {
			tx.m.names.crc = tx.finalizeNames(tx.m.names.blk, &writes)
		}
	}
	// 3. Refcount tree: give every dirty node a block. Allocating may dirty
	// more leaves, so repeat until nothing is left without a block.
	for {
		var todo []rcPos
		for p, n := range tx.rcDirty {
			if n.blk == 0 {
				todo = append(todo, p)
			}
		}
		if len(todo) == 0 {
			break
		}
		sortPos(todo)
		for _, p := range todo {
			n := tx.rcDirty[p]
			b, err := tx.alloc()
			if err != nil {
				return err
			}
			n.blk = b
		}
	}
	positions := make([]rcPos, 0, len(tx.rcDirty))
	for p := range tx.rcDirty {
		positions = append(positions, p)
	}
	sortPos(positions)
	// Bottom-up: each node's pointer goes into its parent, which is dirty
	// too (rcWritable dirties all ancestors; a grown root is new).
	for _, pos := range positions {
		n := tx.rcDirty[pos]
		n.crc = checksum(n.buf)
		writes = append(writes, blockWrite{n.blk, n.buf, n.crc})
		if pos.level == tx.m.rcHeight-1 {
			tx.m.rc = ptr{n.blk, n.crc}
			continue
		}
		parent := tx.rcDirty[rcPos{pos.level + 1, pos.idx / fanout}]
		if parent == nil {
			return fmt.Errorf("objstore: internal error: refcount node %v without dirty parent", pos)
		}
		putPtr(parent.buf[(pos.idx%fanout)*ptrSize:], ptr{n.blk, n.crc})
	}
	nmeta := len(writes) + len(tx.dirtyObj)
	for b, buf := range tx.dirtyObj {
		crc, ok := tx.finalized[b]
		if !ok {
			return fmt.Errorf("objstore: internal error: map node %d not reachable", b)
		}
		writes = append(writes, blockWrite{b, buf, crc})
	}
	for b, buf := range tx.dirtyData {
		writes = append(writes, blockWrite{b, buf, 0})
	}
	// 4. The new superblock.
	tx.m.txid++
	tx.m.freeHint = tx.cursor
	// 5. Write everything, flush, write the superblock, flush.
	if err := tx.writeBlocks(append([]blockWrite(nil), writes...)); err != nil {
		return err
	}
	if err := s.dev.Flush(); err != nil {
		return err
	}
	if _, err := s.dev.WriteAt(tx.m.encode(), int64(tx.m.txid%2)*BlockSize); err != nil {
		s.fail()
		return err
	}
	if err := s.dev.Flush(); err != nil {
		s.fail()
		return err
	}
	// 6. Publish.
	s.mu.Lock()
	s.meta = tx.m
	if len(tx.freed) > 0 {
		list := tx.freed.list()
		for _, b := range list {
			s.pendingB[b] = tx.m.txid
		}
		s.pending[tx.m.txid] = list
	}
	s.allocHint = tx.cursor
	s.free = tx.free
	s.releasePending()
	s.mu.Unlock()
	// The new metadata blocks are what the next transaction reads first.
	s.cmu.Lock()
	for _, w := range writes[:nmeta] {
		if len(s.cache) >= cacheBlocks {
			break
		}
		s.cache[w.blk] = cacheEntry{w.crc, w.buf}
	}
	s.cmu.Unlock()
	return nil
}

func (s *Store) fail() {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
}

// writeBlocks writes blocks sorted, merging neighbours into one write.
func (tx *Tx) writeBlocks(ws []blockWrite) error {
	sort.Slice(ws, func(i, j int) bool { return ws[i].blk < ws[j].blk })
	const maxRun = 256
	total := 0
	for _, w := range ws {
		total += len(w.buf)
	}
	run := tx.s.scratch[:0]
	if cap(run) < min(total, maxRun*BlockSize) {
		run = make([]byte, 0, min(total, maxRun*BlockSize))
		tx.s.scratch = run
	}
	for i := 0; i < len(ws); {
		j := i + 1
		for j < len(ws) && ws[j].blk == ws[j-1].blk+1 && j-i < maxRun {
			j++
		}
		var buf []byte
		if j == i+1 {
			buf = ws[i].buf
		} else {
			run = run[:0]
			for k := i; k < j; k++ {
				run = append(run, ws[k].buf...)
			}
			buf = run
		}
		if _, err := tx.s.dev.WriteAt(buf, int64(ws[i].blk)*BlockSize); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// flushData writes the buffered data blocks to the device (they stay
// unreferenced by any committed state until Commit).
func (tx *Tx) flushData() error {
	if len(tx.dirtyData) == 0 {
		return nil
	}
	ws := make([]blockWrite, 0, len(tx.dirtyData))
	for b, buf := range tx.dirtyData {
		ws = append(ws, blockWrite{b, buf, 0})
	}
	if err := tx.writeBlocks(ws); err != nil {
		return err
	}
	tx.dirtyData = map[uint64][]byte{}
	tx.dataBytes = 0
	return nil
}

// finalizeMap computes the checksums of the dirty map nodes under slot;
// depth counts the nodes on the recursion stack, this one included.
func (tx *Tx) finalizeMap(slot []byte, level, depth int) {
	p := getPtr(slot)
	if p.blk == 0 {
		return
	}
	buf, ok := tx.dirtyObj[p.blk]
	if !ok {
		return
	}
	if crc, ok := tx.finalized[p.blk]; ok {
		putPtr(slot, ptr{p.blk, crc})
		return
	}
	if level >= 2 {
		for i := 0; i < fanout; i++ {
			if len(tx.dirtyObj)-len(tx.finalized) <= depth {
				break // every other dirty node is done: none below
			}
			if getPtr(buf[i*ptrSize:]).blk != 0 {
				tx.finalizeMap(buf[i*ptrSize:(i+1)*ptrSize], level-1, depth+1)
			}
		}
	}
	crc := checksum(buf)
	tx.finalized[p.blk] = crc
	putPtr(slot, ptr{p.blk, crc})
}

func sortPos(ps []rcPos) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].level != ps[j].level {
			return ps[i].level < ps[j].level
		}
		return ps[i].idx < ps[j].idx
	})
}

// blockSet is a set of block numbers, 64 to a map entry (a big write
// allocates long runs).
type blockSet map[uint64]uint64

func (bs blockSet) add(b uint64)      { bs[b/64] |= 1 << (b % 64) }
func (bs blockSet) has(b uint64) bool { return bs[b/64]&(1<<(b%64)) != 0 }

func (bs blockSet) del(b uint64) {
	if w := bs[b/64] &^ (1 << (b % 64)); w != 0 {
		bs[b/64] = w
	} else {
		delete(bs, b/64)
	}
}

func (bs blockSet) list() []uint64 {
	var out []uint64
	for k, w := range bs {
		for i := uint64(0); i < 64; i++ {
			if w&(1<<i) != 0 {
				out = append(out, k*64+i)
			}
		}
	}
	return out
}
