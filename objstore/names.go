package objstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// bnode is a decoded names tree node. A leaf maps names to inodes; a
// branch holds its children with, for each child but the first, the
// smallest name that child may hold.
type bnode struct {
	leaf bool
	keys [][]byte
	vals [][]byte // leaf
	kids []ptr    // branch
	blk  uint64
}

func (n *bnode) size() int {
	sz := nodeHdr
	for i, k := range n.keys {
		if n.leaf {
			sz += 4 + len(k) + len(n.vals[i])
		} else {
			sz += 2 + len(k) + 12
		}
	}
	return sz
}

func (n *bnode) encode() []byte {
	b := make([]byte, BlockSize)
	le := binary.LittleEndian
	le.PutUint16(b, nodeMagic)
	if n.leaf {
		b[2] = leafKind
	} else {
		b[2] = branchKind
	}
	le.PutUint16(b[4:], uint16(len(n.keys)))
	o := nodeHdr
	for i, k := range n.keys {
		le.PutUint16(b[o:], uint16(len(k)))
		if n.leaf {
			le.PutUint16(b[o+2:], uint16(len(n.vals[i])))
			o += 4
			o += copy(b[o:], k)
			o += copy(b[o:], n.vals[i])
		} else {
			o += 2
			o += copy(b[o:], k)
			le.PutUint64(b[o:], n.kids[i].blk)
			le.PutUint32(b[o+8:], n.kids[i].crc)
			o += 12
		}
	}
	return b
}

func decodeNode(b []byte) (*bnode, error) {
	le := binary.LittleEndian
	if len(b) != BlockSize || le.Uint16(b) != nodeMagic || (b[2] != leafKind && b[2] != branchKind) {
		return nil, errors.New("bad names node header")
	}
	n := &bnode{leaf: b[2] == leafKind}
	cnt := int(le.Uint16(b[4:]))
	if cnt == 0 || cnt > BlockSize/4 {
		return nil, fmt.Errorf("bad names node entry count %d", cnt)
	}
	o := nodeHdr
	for i := 0; i < cnt; i++ {
		if o+2 > len(b) {
			return nil, errors.New("names node entry overflows block")
		}
		kl := int(le.Uint16(b[o:]))
		if n.leaf {
			if o+4 > len(b) {
				return nil, errors.New("names node entry overflows block")
			}
			vl := int(le.Uint16(b[o+2:]))
			o += 4
			if o+kl+vl > len(b) {
				return nil, errors.New("names node entry overflows block")
			}
			n.keys = append(n.keys, b[o:o+kl:o+kl])
			n.vals = append(n.vals, b[o+kl:o+kl+vl:o+kl+vl])
			o += kl + vl
		} else {
			o += 2
			if o+kl+12 > len(b) {
				return nil, errors.New("names node entry overflows block")
			}
			n.keys = append(n.keys, b[o:o+kl:o+kl])
			o += kl
			n.kids = append(n.kids, ptr{le.Uint64(b[o:]), le.Uint32(b[o+8:])})
			o += 12
		}
	}
	for i := 1; i < cnt; i++ {
		if bytes.Compare(n.keys[i-1], n.keys[i]) >= 0 && (n.leaf || i > 1) {
			return nil, errors.New("names node keys out of order")
		}
	}
	if n.leaf && len(n.keys[0]) == 0 {
		return nil, errors.New("empty name in names node")
	}
	return n, nil
}

func (n *bnode) clone() *bnode {
	c := &bnode{leaf: n.leaf}
	c.keys = make([][]byte, len(n.keys))
	for i, k := range n.keys {
		c.keys[i] = append([]byte(nil), k...)
	}
	if n.leaf {
		c.vals = make([][]byte, len(n.vals))
		for i, v := range n.vals {
			c.vals[i] = append([]byte(nil), v...)
		}
	} else {
		c.kids = append([]ptr(nil), n.kids...)
	}
	return c
}

// childIndex returns the child of branch n that holds key.
func (n *bnode) childIndex(key []byte) int {
	i := sort.Search(len(n.keys)-1, func(i int) bool { return bytes.Compare(n.keys[i+1], key) > 0 })
	return i
}

func (tx *Tx) namesNode(p ptr, depth int) (*bnode, error) {
	if n, ok := tx.names[p.blk]; ok && tx.writable {
		return n, nil
	}
	if depth > maxDepth {
		return nil, &CorruptError{What: "names node", Block: p.blk, Reason: "tree too deep"}
	}
	b, err := tx.s.readBlock(p, false)
	if err != nil {
		return nil, &CorruptError{What: "names node", Block: p.blk, Reason: err.Error()}
	}
	n, err := decodeNode(b)
	if err != nil {
		return nil, &CorruptError{What: "names node", Block: p.blk, Reason: err.Error()}
	}
	n.blk = p.blk
	return n, nil
}

// namesGet returns the value stored for key.
func (tx *Tx) namesGet(key []byte) ([]byte, bool, error) {
	p := tx.m.names
	for depth := 0; p.blk != 0; depth++ {
		n, err := tx.namesNode(p, depth)
		if err != nil {
			return nil, false, err
		}
		if n.leaf {
			i := sort.Search(len(n.keys), func(i int) bool { return bytes.Compare(n.keys[i], key) >= 0 })
			if i < len(n.keys) && bytes.Equal(n.keys[i], key) {
				return n.vals[i], true, nil
			}
			return nil, false, nil
		}
		p = n.kids[n.childIndex(key)]
	}
	return nil, false, nil
}

// namesScan calls fn for each key >= start in order until fn returns false.
func (tx *Tx) namesScan(start []byte, fn func(k, v []byte) (bool, error)) error {
	if tx.m.names.blk == 0 {
		return nil
	}
	_, err := tx.scanNode(tx.m.names, 0, start, fn, map[uint64]bool{})
	return err
}

func (tx *Tx) scanNode(p ptr, depth int, start []byte, fn func(k, v []byte) (bool, error), seen map[uint64]bool) (bool, error) {
	if seen[p.blk] {
		return false, &CorruptError{What: "names node", Block: p.blk, Reason: "referenced twice"}
	}
	seen[p.blk] = true
	n, err := tx.namesNode(p, depth)
	if err != nil {
		return false, err
	}
	if n.leaf {
		i := sort.Search(len(n.keys), func(i int) bool { return bytes.Compare(n.keys[i], start) >= 0 })
		for ; i < len(n.keys); i++ {
			if more, err := fn(n.keys[i], n.vals[i]); !more || err != nil {
				return false, err
			}
		}
		return true, nil
	}
	for i := n.childIndex(start); i < len(n.kids); i++ {
		if more, err := tx.scanNode(n.kids[i], depth+1, start, fn, seen); !more || err != nil {
			return false, err
		}
	}
	return true, nil
}

// namesWritable returns a private copy of the node p points to, updating *p.
func (tx *Tx) namesWritable(p *ptr, depth int) (*bnode, error) {
	if n, ok := tx.names[p.blk]; ok {
		return n, nil
	}
	old, err := tx.namesNode(*p, depth)
	if err != nil {
		return nil, err
	}
	n := old.clone()
	if n.blk, err = tx.alloc(); err != nil {
		return nil, err
	}
	tx.names[n.blk] = n
	if err := tx.releaseNames(p.blk); err != nil {
		return nil, err
	}
	*p = ptr{blk: n.blk}
	return n, nil
}

func (tx *Tx) releaseNames(b uint64) error {
	delete(tx.names, b)
	return tx.release(b)
}

func (tx *Tx) newNamesNode(leaf bool) (*bnode, error) {
	b, err := tx.alloc()
	if err != nil {
		return nil, err
	}
	n := &bnode{leaf: leaf, blk: b}
	tx.names[b] = n
	return n, nil
}

// namesPut stores key -> val.
func (tx *Tx) namesPut(key, val []byte) error {
	key = append([]byte(nil), key...)
	val = append([]byte(nil), val...)
	if tx.m.names.blk == 0 {
		n, err := tx.newNamesNode(true)
		if err != nil {
			return err
		}
		n.keys, n.vals = [][]byte{key}, [][]byte{val}
		tx.m.names = ptr{blk: n.blk}
		return nil
	}
	root, err := tx.namesWritable(&tx.m.names, 0)
	if err != nil {
		return err
	}
	right, err := tx.insert(root, key, val, 0)
	if err != nil || right == nil {
		return err
	}
	nr, err := tx.newNamesNode(false)
	if err != nil {
		return err
	}
	nr.keys = [][]byte{nil, right.keys[0]}
	nr.kids = []ptr{{blk: root.blk}, {blk: right.blk}}
	if !right.leaf {
		right.keys[0] = nil
	}
	tx.m.names = ptr{blk: nr.blk}
	return nil
}

// insert puts key into the subtree of writable node n; if n had to split,
// it returns the new right sibling (whose first key is the separator).
func (tx *Tx) insert(n *bnode, key, val []byte, depth int) (*bnode, error) {
	if n.leaf {
		i := sort.Search(len(n.keys), func(i int) bool { return bytes.Compare(n.keys[i], key) >= 0 })
		if i < len(n.keys) && bytes.Equal(n.keys[i], key) {
			n.vals[i] = val
		} else {
			n.keys = append(n.keys, nil)
			n.vals = append(n.vals, nil)
			copy(n.keys[i+1:], n.keys[i:])
			copy(n.vals[i+1:], n.vals[i:])
			n.keys[i], n.vals[i] = key, val
		}
	} else {
		i := n.childIndex(key)
		child, err := tx.namesWritable(&n.kids[i], depth+1)
		if err != nil {
			return nil, err
		}
		right, err := tx.insert(child, key, val, depth+1)
		if err != nil {
			return nil, err
		}
		if right != nil {
			sep := right.keys[0]
			if !right.leaf {
				right.keys[0] = nil
			}
			n.keys = append(n.keys, nil)
			n.kids = append(n.kids, ptr{})
			copy(n.keys[i+2:], n.keys[i+1:])
			copy(n.kids[i+2:], n.kids[i+1:])
			n.keys[i+1], n.kids[i+1] = sep, ptr{blk: right.blk}
		}
	}
	if n.size() <= BlockSize {
		return nil, nil
	}
	// Split by bytes.
	total, acc, mid := n.size(), nodeHdr, 0
	for mid = 0; mid < len(n.keys)-1; mid++ {
		if n.leaf {
			acc += 4 + len(n.keys[mid]) + len(n.vals[mid])
		} else {
			acc += 14 + len(n.keys[mid])
		}
		if acc > total/2 && mid > 0 {
			break
		}
	}
	if mid == 0 {
		mid = 1
	}
	r, err := tx.newNamesNode(n.leaf)
	if err != nil {
		return nil, err
	}
	r.keys = append([][]byte(nil), n.keys[mid:]...)
	n.keys = n.keys[:mid:mid]
	if n.leaf {
		r.vals = append([][]byte(nil), n.vals[mid:]...)
		n.vals = n.vals[:mid:mid]
	} else {
		r.kids = append([]ptr(nil), n.kids[mid:]...)
		n.kids = n.kids[:mid:mid]
	}
	return r, nil
}

// namesDelete removes key, which must exist.
func (tx *Tx) namesDelete(key []byte) error {
	if tx.m.names.blk == 0 {
		return ErrNotFound
	}
	root, err := tx.namesWritable(&tx.m.names, 0)
	if err != nil {
		return err
	}
	if err := tx.remove(root, key, 0); err != nil {
		return err
	}
	for {
		if len(root.keys) == 0 {
			if err := tx.releaseNames(root.blk); err != nil {
				return err
			}
			tx.m.names = ptr{}
			return nil
		}
		if root.leaf || len(root.kids) > 1 {
			return nil
		}
		child, err := tx.namesWritable(&root.kids[0], 1)
		if err != nil {
			return err
		}
		if err := tx.releaseNames(root.blk); err != nil {
			return err
		}
		tx.m.names = ptr{blk: child.blk}
		root = child
	}
}

func (tx *Tx) remove(n *bnode, key []byte, depth int) error {
	if n.leaf {
		i := sort.Search(len(n.keys), func(i int) bool { return bytes.Compare(n.keys[i], key) >= 0 })
		if i >= len(n.keys) || !bytes.Equal(n.keys[i], key) {
			return ErrNotFound
		}
		n.keys = append(n.keys[:i], n.keys[i+1:]...)
		n.vals = append(n.vals[:i], n.vals[i+1:]...)
		return nil
	}
	i := n.childIndex(key)
	child, err := tx.namesWritable(&n.kids[i], depth+1)
	if err != nil {
		return err
	}
	if err := tx.remove(child, key, depth+1); err != nil {
		return err
	}
	if len(child.keys) == 0 {
		if err := tx.releaseNames(child.blk); err != nil {
			return err
		}
		n.keys = append(n.keys[:i], n.keys[i+1:]...)
		n.kids = append(n.kids[:i], n.kids[i+1:]...)
		if len(n.keys) > 0 {
			n.keys[0] = nil
		}
	}
	return nil
}

// finalizeNames encodes the dirty subtree at blk and returns its checksum.
func (tx *Tx) finalizeNames(blk uint64, ws *[]blockWrite) uint32 {
	n := tx.names[blk]
	if !n.leaf {
		for i, k := range n.kids {
			if _, ok := tx.names[k.blk]; ok {
				n.kids[i].crc = tx.finalizeNames(k.blk, ws)
			}
		}
	}
	b := n.encode()
	crc := checksum(b)
	*ws = append(*ws, blockWrite{blk, b, crc})
	return crc
}
