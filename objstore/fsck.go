package objstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// FsckReport is the result of a consistency check.
type FsckReport struct {
	TxID       uint64   // committed state checked
	Objects    uint64   // objects found
	Blocks     uint64   // blocks in the store's address space
	UsedBlocks uint64   // blocks referenced (superblocks included)
	DataBlocks uint64   // distinct data blocks
	Problems   []string // every problem found (up to a limit)
	Omitted    int      // problems found past the limit
}

// OK reports whether no problem was found.
func (r *FsckReport) OK() bool { return len(r.Problems) == 0 }

func (r *FsckReport) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "clean: txid %d, %d objects, %d of %d blocks used (%d data)\n", r.TxID, r.Objects, r.UsedBlocks, r.Blocks, r.DataBlocks)
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems (txid %d):\n", len(r.Problems)+r.Omitted, r.TxID)
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	if r.Omitted > 0 {
		fmt.Fprintf(&b, "  ... and %d more\n", r.Omitted)
	}
	return b.String()
}

func (r *FsckReport) add(format string, args ...any) {
	if len(r.Problems) >= maxProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Fsck checks the latest committed state of the store on dev, reading
// every block from the device (no cache): superblocks, checksums of every
// metadata and data block, names tree ordering, and that every block's
// refcount equals the number of references to it (no leaked, doubly used
// or wrongly free block). It never modifies the device.
func Fsck(dev BlockDevice) *FsckReport {
	r, _ := fsck(dev)
	return r
}

// fsck also returns the referenced blocks.
func fsck(dev BlockDevice) (*FsckReport, map[uint64]uint32) {
	r := &FsckReport{}
	ms, errs := readSuper(dev)
	m, _, err := pickSuper(dev)
	if err != nil {
		r.add("%v", err)
		return r, nil
	}
	for i := 0; i < 2; i++ {
		if errs[i] != nil && i == 1 && m.txid == 0 && zeroBlock(dev, 1) {
			// Create was cut between its two superblock writes: the
			// store is empty at txid 0, as Open takes it, and the first
			// commit writes slot 1.
			continue
		}
		if errs[i] != nil {
			r.add("superblock %d invalid: %v", i, errs[i])
		} else if ms[i].txid != m.txid && ms[i].txid+1 != m.txid {
			r.add("superblock %d has txid %d, latest is %d", i, ms[i].txid, m.txid)
		}
	}
	s := &Store{dev: dev, meta: m, cache: nil}
	c := &checker{r: r, tx: &Tx{s: s, m: m}, m: m, refs: map[uint64]uint32{}, kind: map[uint64]byte{}}
	c.check()
	return r, c.refs
}

// zeroBlock reports whether block b of dev reads as zeros (never written).
func zeroBlock(dev BlockDevice, b int64) bool {
	buf := make([]byte, BlockSize)
	if _, err := dev.ReadAt(buf, b*BlockSize); err != nil {
		return false
	}
	for _, c := range buf {
		if c != 0 {
			return false
		}
	}
	return true
}

// Fsck checks the store's latest committed state; see the function Fsck.
func (s *Store) Fsck() *FsckReport { return Fsck(s.dev) }

type checker struct {
	r    *FsckReport
	tx   *Tx
	m    meta
	refs map[uint64]uint32
	kind map[uint64]byte
}

var kindName = map[byte]string{'n': "names node", 'm': "map node", 'd': "data block", 'r': "refcount node"}

// ref records a reference to b and reports whether it is the first.
func (c *checker) ref(b uint64, k byte, ctx string) bool {
	if b < firstBlock || b >= c.m.nblocks {
		c.r.add("%s points outside the store (block %d, store has %d)", ctx, b, c.m.nblocks)
		return false
	}
	c.refs[b]++
	if old, ok := c.kind[b]; ok && old != k {
		c.r.add("block %d used both as %s and as %s (%s)", b, kindName[old], kindName[k], ctx)
		return false
	}
	c.kind[b] = k
	return c.refs[b] == 1
}

func (c *checker) read(p ptr) ([]byte, error) {
	b := make([]byte, BlockSize)
	if err := c.tx.s.readRaw(b, p.blk); err != nil {
		return nil, err
	}
	if checksum(b) != p.crc {
		return nil, errChecksum
	}
	return b, nil
}

func (c *checker) check() {
	r, m := c.r, c.m
	r.TxID, r.Blocks = m.txid, m.nblocks
	if m.names.blk != 0 {
		leafDepth := -1
		c.walkNames(m.names, 0, nil, nil, &leafDepth)
	}
	if r.Objects != m.objects {
		r.add("superblock counts %d objects, names tree holds %d", m.objects, r.Objects)
	}
	// Refcount tree.
	leaves := map[uint64][]byte{}
	if m.rcHeight > 0 && m.rc.blk != 0 {
		c.walkRC(m.rc, m.rcHeight-1, 0, leaves)
	}
	if rcCap(m.rcHeight) < m.nblocks && m.nblocks > firstBlock {
		r.add("refcount tree (height %d) covers %d blocks, store has %d", m.rcHeight, rcCap(m.rcHeight), m.nblocks)
	}
	for idx, leaf := range leaves {
		for i := uint64(0); i < rcPerLeaf; i++ {
			b := idx*rcPerLeaf + i
			v := binary.LittleEndian.Uint32(leaf[i*4:])
			if v != 0 && (b < firstBlock || b >= m.nblocks) {
				r.add("refcount of block %d is %d but the block is outside the store", b, v)
			}
		}
	}
	used := uint64(firstBlock)
	for b := uint64(firstBlock); b < m.nblocks; b++ {
		var v uint32
		if leaf := leaves[b/rcPerLeaf]; leaf != nil {
			v = binary.LittleEndian.Uint32(leaf[(b%rcPerLeaf)*4:])
		}
		n := c.refs[b]
		if n > 0 {
			used++
			if c.kind[b] == 'd' {
				r.DataBlocks++
			}
		}
		switch {
		case v == n:
		case n == 0:
			r.add("block %d leaked: refcount %d but nothing references it", b, v)
		case v == 0:
			r.add("block %d (%s) is referenced %d times but marked free", b, kindName[c.kind[b]], n)
		default:
			r.add("block %d (%s): refcount %d but %d references", b, kindName[c.kind[b]], v, n)
		}
	}
	r.UsedBlocks = used
}

func (c *checker) walkNames(p ptr, depth int, lo, hi []byte, leafDepth *int) {
	if depth > maxDepth {
		c.r.add("names tree deeper than %d at block %d", maxDepth, p.blk)
		return
	}
	if !c.ref(p.blk, 'n', "names tree") {
		return
	}
	b, err := c.read(p)
	if err != nil {
		c.r.add("names node at block %d: %v", p.blk, err)
		return
	}
	n, err := decodeNode(b)
	if err != nil {
		c.r.add("names node at block %d: %v", p.blk, err)
		return
	}
	start := 0
	if !n.leaf {
		start = 1
	}
	for i := start; i < len(n.keys); i++ {
		k := n.keys[i]
		if (lo != nil && bytes.Compare(k, lo) < 0) || (hi != nil && bytes.Compare(k, hi) >= 0) {
			c.r.add("names node at block %d: key %q out of its parent's range", p.blk, k)
		}
	}
	if n.leaf {
		if *leafDepth < 0 {
			*leafDepth = depth
		} else if *leafDepth != depth {
			c.r.add("names leaf at block %d at depth %d, others at %d", p.blk, depth, *leafDepth)
		}
		for i, k := range n.keys {
			name := string(k)
			c.r.Objects++
			if err := validName(name); err != nil {
				c.r.add("names node at block %d: %v", p.blk, err)
			}
			in, err := decodeInode(name, n.vals[i])
			if err != nil {
				c.r.add("%v", err)
				continue
			}
			c.walkMap(in, in.root[:], in.height, 0)
		}
		return
	}
	for i, kid := range n.kids {
		klo, khi := lo, hi
		if i > 0 {
			klo = n.keys[i]
		}
		if i+1 < len(n.keys) {
			khi = n.keys[i+1]
		}
		c.walkNames(kid, depth+1, klo, khi, leafDepth)
	}
}

func (c *checker) walkMap(in *inode, slot []byte, level int, base uint64) {
	p := getPtr(slot)
	if p.blk == 0 {
		return
	}
	nlog := uint64((in.size + BlockSize - 1) / BlockSize)
	k := byte('m')
	if level == 0 {
		k = 'd'
	}
	if !c.ref(p.blk, k, fmt.Sprintf("object %q", in.name)) {
		return // shared with a clone: checked on the first visit
	}
	if base >= nlog {
		c.r.add("object %q: %s for logical block %d past its size %d", in.name, kindName[k], base, in.size)
	}
	b, err := c.read(p)
	if err != nil {
		if level == 0 {
			c.r.add("object %q: data block %d (device block %d): %v", in.name, base, p.blk, err)
		} else {
			c.r.add("object %q: map node (level %d, device block %d): %v", in.name, level, p.blk, err)
		}
		return
	}
	if level == 0 {
		return
	}
	span := capBlocks(level - 1)
	for i := uint64(0); i < fanout; i++ {
		c.walkMap(in, b[i*ptrSize:(i+1)*ptrSize], level-1, base+i*span)
	}
}

func (c *checker) walkRC(p ptr, level uint32, idx uint64, leaves map[uint64][]byte) {
	if !c.ref(p.blk, 'r', "refcount tree") {
		return
	}
	b, err := c.read(p)
	if err != nil {
		c.r.add("refcount node (level %d) at block %d: %v", level, p.blk, err)
		return
	}
	if level == 0 {
		leaves[idx] = b
		return
	}
	for i := uint64(0); i < fanout; i++ {
		if e := getPtr(b[i*ptrSize:]); e.blk != 0 {
			c.walkRC(e, level-1, idx*fanout+i, leaves)
		}
	}
}
