package objstore

import (
	"bytes"
	"fmt"
	"io"
	"sort"
)

// Object is an object opened in a transaction. It is valid until the
// transaction ends.
type Object struct {
	tx *Tx
	in *inode
}

// ObjectInfo describes an object.
type ObjectInfo struct {
	Name string
	Size int64
}

// Extent is a run of an object's bytes: Length bytes at logical offset
// Logical are stored at device offset Device (a multiple of BlockSize),
// or are a hole (never written: zeros, no space) when Hole is true. The
// last extent may end inside a block; the device block is whole.
type Extent struct {
	Logical int64
	Device  int64
	Length  int64
	Hole    bool
}

// inode returns the named object's inode.
func (tx *Tx) inode(name string) (*inode, error) {
	if in, ok := tx.inodes[name]; ok {
		if in.deleted {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return in, nil
	}
	v, ok, err := tx.namesGet([]byte(name))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	in, err := decodeInode(name, v)
	if err != nil {
		return nil, &CorruptError{Object: name, What: "inode", Reason: err.Error()}
	}
	if tx.inodes == nil {
		tx.inodes = map[string]*inode{}
	}
	tx.inodes[name] = in
	return in, nil
}

func (tx *Tx) exists(name string) (bool, error) {
	_, err := tx.inode(name)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, err
}

func isNotFound(err error) bool {
	for e := err; e != nil; {
		if e == ErrNotFound {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// Create creates an empty object. It fails with ErrExists if name exists.
func (tx *Tx) Create(name string) (*Object, error) {
	if err := tx.check(true); err != nil {
		return nil, err
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	if ok, err := tx.exists(name); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("%w: %q", ErrExists, name)
	}
	in := &inode{name: name, dirty: true}
	if err := tx.namesPut([]byte(name), in.encode()); err != nil {
		return nil, err
	}
	tx.inodes[name] = in
	tx.m.objects++
	tx.modified = true
	return &Object{tx, in}, nil
}

// Open opens an existing object.
func (tx *Tx) Open(name string) (*Object, error) {
	if err := tx.check(false); err != nil {
		return nil, err
	}
	in, err := tx.inode(name)
	if err != nil {
		return nil, err
	}
	return &Object{tx, in}, nil
}

// Stat returns the object's size.
func (tx *Tx) Stat(name string) (ObjectInfo, error) {
	o, err := tx.Open(name)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{name, o.in.size}, nil
}

// Delete removes an object. Blocks it alone used are freed at commit.
func (tx *Tx) Delete(name string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	in, err := tx.inode(name)
	if err != nil {
		return err
	}
	tx.modified = true
	if p := getPtr(in.root[:]); p.blk != 0 {
		if err := tx.decref(p, in.height, in); err != nil {
			return err
		}
	}
	if err := tx.namesDelete([]byte(name)); err != nil {
		return err
	}
	in.deleted = true
	delete(tx.inodes, name)
	tx.m.objects--
	return nil
}

// Rename renames an object. It fails with ErrExists if newName exists.
func (tx *Tx) Rename(oldName, newName string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if err := validName(newName); err != nil {
		return err
	}
	in, err := tx.inode(oldName)
	if err != nil {
		return err
	}
	if oldName == newName {
		return nil
	}
	if ok, err := tx.exists(newName); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%w: %q", ErrExists, newName)
	}
	tx.modified = true
	if err := tx.namesDelete([]byte(oldName)); err != nil {
		return err
	}
	if err := tx.namesPut([]byte(newName), in.encode()); err != nil {
		return err
	}
	delete(tx.inodes, oldName)
	in.name = newName
	in.dirty = true
	tx.inodes[newName] = in
	return nil
}

// Clone makes dst a copy of src in O(1): both share src's blocks, which
// are copied on a later write to either. dst must not exist.
func (tx *Tx) Clone(src, dst string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if err := validName(dst); err != nil {
		return err
	}
	in, err := tx.inode(src)
	if err != nil {
		return err
	}
	if ok, err := tx.exists(dst); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%w: %q", ErrExists, dst)
	}
	tx.modified = true
	if p := getPtr(in.root[:]); p.blk != 0 {
		if err := tx.incref(p.blk); err != nil {
			return err
		}
	}
	c := &inode{name: dst, size: in.size, root: in.root, height: in.height, dirty: true}
	if err := tx.namesPut([]byte(dst), c.encode()); err != nil {
		return err
	}
	tx.inodes[dst] = c
	tx.m.objects++
	return nil
}

// List calls fn for each object whose name starts with prefix, in name
// order. fn must not modify the store.
func (tx *Tx) List(prefix string, fn func(ObjectInfo) error) error {
	if err := tx.check(false); err != nil {
		return err
	}
	return tx.namesScan([]byte(prefix), func(k, v []byte) (bool, error) {
		if !bytes.HasPrefix(k, []byte(prefix)) {
			return false, nil
		}
		name := string(k)
		if in, ok := tx.inodes[name]; ok {
			return true, fn(ObjectInfo{name, in.size})
		}
		in, err := decodeInode(name, v)
		if err != nil {
			return false, &CorruptError{Object: name, What: "inode", Reason: err.Error()}
		}
		return true, fn(ObjectInfo{name, in.size})
	})
}

// Count returns the number of objects.
func (tx *Tx) Count() uint64 { return tx.m.objects }

// Name returns the object's current name.
func (o *Object) Name() string { return o.in.name }

// Size returns the object's size in bytes.
func (o *Object) Size() int64 { return o.in.size }

func (o *Object) ok(write bool) error {
	if err := o.tx.check(write); err != nil {
		return err
	}
	if o.in.deleted {
		return fmt.Errorf("%w: %q (deleted)", ErrNotFound, o.in.name)
	}
	return nil
}

// mapNode returns the contents of a map node.
func (tx *Tx) mapNode(p ptr, in *inode) ([]byte, error) {
	if tx.writable {
		if b, ok := tx.dirtyObj[p.blk]; ok {
			return b, nil
		}
	}
	b, err := tx.s.readBlock(p, false)
	if err != nil {
		return nil, &CorruptError{Object: in.name, What: "map node", Block: p.blk, Reason: err.Error()}
	}
	return b, nil
}

// readData reads data block e (logical block l of in) into dst.
func (tx *Tx) readData(dst []byte, e ptr, in *inode, l uint64) error {
	if tx.writable {
		if b, ok := tx.dirtyData[e.blk]; ok {
			copy(dst, b)
			return nil
		}
	}
	if err := tx.s.readRaw(dst[:BlockSize], e.blk); err != nil {
		return &CorruptError{Object: in.name, What: fmt.Sprintf("data block %d", l), Block: e.blk, Reason: err.Error()}
	}
	if checksum(dst[:BlockSize]) != e.crc {
		return &CorruptError{Object: in.name, What: fmt.Sprintf("data block %d", l), Block: e.blk, Reason: "checksum mismatch"}
	}
	return nil
}

// leafR returns the entries covering logical block l read-only: the
// level-1 node, or nil for a hole, the logical block of its first entry,
// and the number of logical blocks it (or the hole) covers.
func (tx *Tx) leafR(in *inode, l uint64) ([]byte, uint64, uint64, error) {
	if l >= capBlocks(in.height) {
		return nil, l, 1 << 62, nil
	}
	if in.height == 0 {
		return in.root[:], 0, 1, nil
	}
	slot := in.root[:]
	for level := in.height; level >= 1; level-- {
		p := getPtr(slot)
		if p.blk == 0 {
			span := capBlocks(level)
			return nil, l - l%span, span, nil
		}
		buf, err := tx.mapNode(p, in)
		if err != nil {
			return nil, 0, 0, err
		}
		if level == 1 {
			return buf, l - l%fanout, fanout, nil
		}
		idx := (l / capBlocks(level-1)) % fanout
		slot = buf[idx*ptrSize : (idx+1)*ptrSize]
	}
	panic("unreachable")
}

// ReadAt reads from the object. Holes read as zeros. It returns io.EOF
// when reading at or past the end.
func (o *Object) ReadAt(p []byte, off int64) (int, error) {
	if err := o.ok(false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, ErrBadOffset
	}
	if off >= o.in.size {
		return 0, io.EOF
	}
	n := len(p)
	var eof error
	if int64(n) > o.in.size-off {
		n = int(o.in.size - off)
		eof = io.EOF
	}
	tx := o.tx
	blk := make([]byte, BlockSize)
	var run []byte
	pos, end := off, off+int64(n)
	for pos < end {
		l := uint64(pos / BlockSize)
		entries, first, span, err := tx.leafR(o.in, l)
		if err != nil {
			return int(pos - off), err
		}
		// Blocks of this leaf covered by the read.
		last := first + span
		if lastRead := uint64((end-1)/BlockSize) + 1; lastRead < last {
			last = lastRead
		}
		for l < last {
			var e ptr
			if entries != nil {
				e = getPtr(entries[(l-first)*ptrSize:])
			}
			bo := pos % BlockSize
			cnt := int64(BlockSize) - bo
			if cnt > end-pos {
				cnt = end - pos
			}
			dst := p[pos-off : pos-off+cnt]
			if e.blk == 0 {
				if entries == nil {
					// A whole hole: zero up to its end at once.
					stop := int64(last) * BlockSize
					if stop > end || stop < 0 {
						stop = end
					}
					clear(p[pos-off : stop-off])
					pos = stop
					l = last
					continue
				}
				clear(dst)
				pos += cnt
				l++
				continue
			}
			// Coalesce a run of device-contiguous blocks.
			k := uint64(1)
			if _, dirty := tx.dirtyData[e.blk]; !dirty || !tx.writable {
				for l+k < last && k < 256 {
					e2 := getPtr(entries[(l+k-first)*ptrSize:])
					if e2.blk != e.blk+k {
						break
					}
					if _, d := tx.dirtyData[e2.blk]; d && tx.writable {
						break
					}
					k++
				}
			}
			if k == 1 {
				if err := tx.readData(blk, e, o.in, l); err != nil {
					return int(pos - off), err
				}
				copy(dst, blk[bo:])
				pos += cnt
				l++
				continue
			}
			if cap(run) < int(k)*BlockSize {
				run = make([]byte, k*BlockSize)
			}
			run = run[:k*BlockSize]
			if err := tx.s.readRaw(run, e.blk); err != nil {
				return int(pos - off), &CorruptError{Object: o.in.name, What: fmt.Sprintf("data block %d", l), Block: e.blk, Reason: err.Error()}
			}
			for i := uint64(0); i < k; i++ {
				ei := getPtr(entries[(l+i-first)*ptrSize:])
				b := run[i*BlockSize : (i+1)*BlockSize]
				if checksum(b) != ei.crc {
					return int(pos - off), &CorruptError{Object: o.in.name, What: fmt.Sprintf("data block %d", l+i), Block: ei.blk, Reason: "checksum mismatch"}
				}
				bo := pos % BlockSize
				cnt := int64(BlockSize) - bo
				if cnt > end-pos {
					cnt = end - pos
				}
				copy(p[pos-off:pos-off+cnt], b[bo:])
				pos += cnt
			}
			l += k
		}
	}
	return n, eof
}

// growHeight makes the map of in tall enough to hold logical block l.
func (tx *Tx) growHeight(in *inode, l uint64) error {
	for capBlocks(in.height) <= l {
		if in.height >= maxHeight {
			return fmt.Errorf("objstore: object %q: offset too large", in.name)
		}
		old := getPtr(in.root[:])
		if old.blk != 0 {
			nb, err := tx.alloc()
			if err != nil {
				return err
			}
			buf := make([]byte, BlockSize)
			copy(buf, in.root[:])
			tx.dirtyObj[nb] = buf
			putPtr(in.root[:], ptr{blk: nb})
		}
		in.height++
	}
	return nil
}

// cowSlot makes the map node that slot points to private to this
// transaction (copying it if it is shared or committed) and returns it.
func (tx *Tx) cowSlot(slot []byte, in *inode) ([]byte, error) {
	p := getPtr(slot)
	if p.blk == 0 {
		nb, err := tx.alloc()
		if err != nil {
			return nil, err
		}
		buf := make([]byte, BlockSize)
		tx.dirtyObj[nb] = buf
		putPtr(slot, ptr{blk: nb})
		return buf, nil
	}
	rc, err := tx.rcGet(p.blk)
	if err != nil {
		return nil, err
	}
	if rc == 0 {
		return nil, &CorruptError{Object: in.name, What: "map node", Block: p.blk, Reason: "refcount is zero"}
	}
	if buf, ok := tx.dirtyObj[p.blk]; ok && rc == 1 {
		return buf, nil
	}
	old, err := tx.mapNode(p, in)
	if err != nil {
		return nil, err
	}
	buf := append([]byte(nil), old...)
	nb, err := tx.alloc()
	if err != nil {
		return nil, err
	}
	if rc > 1 {
		for i := 0; i < fanout; i++ {
			if e := getPtr(buf[i*ptrSize:]); e.blk != 0 {
				if err := tx.incref(e.blk); err != nil {
					return nil, err
				}
			}
		}
		if err := tx.setRC(p.blk, rc-1); err != nil {
			return nil, err
		}
	} else if err := tx.release(p.blk); err != nil {
		return nil, err
	}
	tx.dirtyObj[nb] = buf
	putPtr(slot, ptr{blk: nb})
	return buf, nil
}

// leafW returns the writable entries covering logical block l and the
// logical block of the first one.
func (tx *Tx) leafW(in *inode, l uint64) ([]byte, uint64, error) {
	if err := tx.growHeight(in, l); err != nil {
		return nil, 0, err
	}
	if in.height == 0 {
		return in.root[:], 0, nil
	}
	slot := in.root[:]
	for level := in.height; ; level-- {
		buf, err := tx.cowSlot(slot, in)
		if err != nil {
			return nil, 0, err
		}
		if level == 1 {
			return buf, l - l%fanout, nil
		}
		idx := (l / capBlocks(level-1)) % fanout
		slot = buf[idx*ptrSize : (idx+1)*ptrSize]
	}
}

// decref drops one reference to the block p (at map level: 0 is data),
// freeing it and what it points to when it was the last.
func (tx *Tx) decref(p ptr, level int, in *inode) error {
	rc, err := tx.rcGet(p.blk)
	if err != nil {
		return err
	}
	if rc == 0 {
		return &CorruptError{Object: in.name, What: "referenced block", Block: p.blk, Reason: "refcount is zero"}
	}
	if rc > 1 {
		return tx.setRC(p.blk, rc-1)
	}
	if level >= 1 {
		buf, err := tx.mapNode(p, in)
		if err != nil {
			return err
		}
		for i := 0; i < fanout; i++ {
			if e := getPtr(buf[i*ptrSize:]); e.blk != 0 {
				if err := tx.decref(e, level-1, in); err != nil {
					return err
				}
			}
		}
	}
	return tx.release(p.blk)
}

// WriteAt writes to the object, extending it if needed.
func (o *Object) WriteAt(p []byte, off int64) (int, error) {
	if err := o.ok(true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, ErrBadOffset
	}
	if len(p) == 0 {
		return 0, nil
	}
	tx, in := o.tx, o.in
	end := off + int64(len(p))
	if end < off || uint64((end-1)/BlockSize) >= capBlocks(maxHeight) {
		return 0, fmt.Errorf("objstore: object %q: offset too large", in.name)
	}
	tx.modified = true
	in.dirty = true
	// Grow the map first so that its new nodes are not allocated between
	// the data blocks.
	if err := tx.growHeight(in, uint64((end-1)/BlockSize)); err != nil {
		return 0, err
	}
	// A run of full blocks whose device blocks and source bytes are both
	// contiguous.
	var runDev uint64
	var runSrc int64
	var runLen int64
	flushRun := func() error {
		if runLen == 0 {
			return nil
		}
		src := p[runSrc : runSrc+runLen*BlockSize]
		if runLen >= directRun {
			for i := int64(0); i < runLen; i++ {
				if d, ok := tx.dirtyData[runDev+uint64(i)]; ok {
					tx.dataBytes -= len(d)
					delete(tx.dirtyData, runDev+uint64(i))
				}
			}
			if _, err := tx.s.dev.WriteAt(src, int64(runDev)*BlockSize); err != nil {
				return err
			}
		} else {
			for i := int64(0); i < runLen; i++ {
				tx.putDirty(runDev+uint64(i), append([]byte(nil), src[i*BlockSize:(i+1)*BlockSize]...))
			}
		}
		runLen = 0
		return nil
	}
	pos := off
	for pos < end {
		l := uint64(pos / BlockSize)
		entries, first, err := tx.leafW(in, l)
		if err != nil {
			return int(pos - off), err
		}
		last := first + uint64(len(entries)/ptrSize)
		for l < last && pos < end {
			slot := entries[(l-first)*ptrSize : (l-first+1)*ptrSize]
			bo := pos % BlockSize
			cnt := int64(BlockSize) - bo
			if cnt > end-pos {
				cnt = end - pos
			}
			src := p[pos-off : pos-off+cnt]
			e := getPtr(slot)
			inplace := false
			if e.blk != 0 {
				if tx.newBlocks.has(e.blk) {
					rc, err := tx.rcGet(e.blk)
					if err != nil {
						return int(pos - off), err
					}
					inplace = rc == 1
				}
			}
			var content []byte
			full := cnt == BlockSize
			if full {
				content = src
			} else {
				if err := flushRun(); err != nil {
					return int(pos - off), err
				}
				content = make([]byte, BlockSize)
				if e.blk != 0 {
					if err := tx.readData(content, e, in, l); err != nil {
						return int(pos - off), err
					}
				}
				copy(content[bo:], src)
			}
			target := e.blk
			if !inplace {
				if target, err = tx.alloc(); err != nil {
					return int(pos - off), err
				}
				if e.blk != 0 {
					if err := tx.decref(e, 0, in); err != nil {
						return int(pos - off), err
					}
				}
			}
			putPtr(slot, ptr{target, checksum(content)})
			if full {
				if runLen > 0 && (target != runDev+uint64(runLen) || pos-off != runSrc+runLen*BlockSize) {
					if err := flushRun(); err != nil {
						return int(pos - off), err
					}
				}
				if runLen == 0 {
					runDev, runSrc = target, pos-off
				}
				runLen++
			} else {
				tx.putDirty(target, content)
			}
			pos += cnt
			l++
		}
	}
	if err := flushRun(); err != nil {
		return int(pos - off), err
	}
	if end > in.size {
		in.size = end
	}
	if tx.dataBytes > dataCap {
		if err := tx.flushData(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

func (tx *Tx) putDirty(b uint64, buf []byte) {
	if old, ok := tx.dirtyData[b]; ok {
		tx.dataBytes -= len(old)
	}
	tx.dirtyData[b] = buf
	tx.dataBytes += len(buf)
}

// Truncate changes the object's size. Growing adds a hole; shrinking frees
// the blocks past the new end.
func (o *Object) Truncate(size int64) error {
	if err := o.ok(true); err != nil {
		return err
	}
	if size < 0 {
		return ErrBadOffset
	}
	tx, in := o.tx, o.in
	if size == in.size {
		return nil
	}
	tx.modified = true
	in.dirty = true
	if size > in.size {
		if uint64((size-1)/BlockSize) >= capBlocks(maxHeight) {
			return fmt.Errorf("objstore: object %q: size too large", in.name)
		}
		in.size = size
		return nil
	}
	keep := uint64((size + BlockSize - 1) / BlockSize)
	if err := tx.trunc(in.root[:], in.height, keep, in); err != nil {
		return err
	}
	if getPtr(in.root[:]).blk == 0 {
		in.height = 0
	}
	in.size = size
	if bo := size % BlockSize; bo != 0 {
		// Zero the tail of the last block so a later extension reads zeros.
		l := uint64(size / BlockSize)
		entries, first, _, err := tx.leafR(in, l)
		if err != nil {
			return err
		}
		if entries != nil && getPtr(entries[(l-first)*ptrSize:]).blk != 0 {
			saved := in.size
			if _, err := o.WriteAt(make([]byte, BlockSize-bo), size); err != nil {
				return err
			}
			in.size = saved
			if err := tx.trunc(in.root[:], in.height, keep, in); err != nil {
				return err
			}
		}
	}
	return nil
}

// trunc frees the blocks at logical index >= from in the subtree at slot,
// whose level is level.
func (tx *Tx) trunc(slot []byte, level int, from uint64, in *inode) error {
	p := getPtr(slot)
	if p.blk == 0 || from >= capBlocks(level) {
		return nil
	}
	if from == 0 {
		if err := tx.decref(p, level, in); err != nil {
			return err
		}
		putPtr(slot, ptr{})
		return nil
	}
	span := capBlocks(level - 1)
	firstIdx := from / span
	// Anything to free?
	ro, err := tx.mapNode(p, in)
	if err != nil {
		return err
	}
	any := false
	for i := firstIdx; i < fanout; i++ {
		if getPtr(ro[i*ptrSize:]).blk != 0 {
			any = true
			break
		}
	}
	if !any {
		return nil
	}
	buf, err := tx.cowSlot(slot, in)
	if err != nil {
		return err
	}
	for i := firstIdx; i < fanout; i++ {
		child := buf[i*ptrSize : (i+1)*ptrSize]
		cf := uint64(0)
		if i == firstIdx {
			cf = from - i*span
		}
		if err := tx.trunc(child, level-1, cf, in); err != nil {
			return err
		}
	}
	return nil
}

// Extents returns the object's layout: data extents with their device
// offsets, and holes. In a write transaction it first writes buffered
// data to the device; the offsets stay valid while the transaction (or,
// for committed data, any transaction that sees it) is open.
func (o *Object) Extents() ([]Extent, error) {
	if err := o.ok(false); err != nil {
		return nil, err
	}
	tx, in := o.tx, o.in
	if tx.writable {
		if err := tx.flushData(); err != nil {
			return nil, err
		}
	}
	var out []Extent
	add := func(logical, dev, length int64, hole bool) {
		if n := len(out); n > 0 {
			x := &out[n-1]
			if x.Hole == hole && x.Logical+x.Length == logical && (hole || x.Device+x.Length == dev) {
				x.Length += length
				return
			}
		}
		out = append(out, Extent{logical, dev, length, hole})
	}
	nb := uint64((in.size + BlockSize - 1) / BlockSize)
	for l := uint64(0); l < nb; {
		entries, first, span, err := tx.leafR(in, l)
		if err != nil {
			return nil, err
		}
		last := first + span
		if last > nb || last < first {
			last = nb
		}
		if entries == nil {
			length := int64(last-l) * BlockSize
			if int64(last)*BlockSize > in.size {
				length = in.size - int64(l)*BlockSize
			}
			add(int64(l)*BlockSize, 0, length, true)
			l = last
			continue
		}
		for ; l < last; l++ {
			length := int64(BlockSize)
			if int64(l+1)*BlockSize > in.size {
				length = in.size - int64(l)*BlockSize
			}
			var e ptr
			if entries != nil {
				e = getPtr(entries[(l-first)*ptrSize:])
			}
			if e.blk == 0 {
				add(int64(l)*BlockSize, 0, length, true)
			} else {
				add(int64(l)*BlockSize, int64(e.blk)*BlockSize, length, false)
			}
		}
	}
	return out, nil
}

// SharedBytes returns how many of the object's bytes are stored in blocks
// that other objects also use.
func (tx *Tx) SharedBytes(name string) (int64, error) {
	if err := tx.check(false); err != nil {
		return 0, err
	}
	in, err := tx.inode(name)
	if err != nil {
		return 0, err
	}
	var n int64
	err = tx.walkData(in, func(l uint64, e ptr, shared bool) error {
		if shared {
			n += min(BlockSize, max(0, in.size-int64(l)*BlockSize))
		}
		return nil
	})
	return n, err
}

// walkData calls fn for each data block of in, telling whether the block
// is shared with another object (its refcount or that of a map node above
// it is more than one).
func (tx *Tx) walkData(in *inode, fn func(l uint64, e ptr, shared bool) error) error {
	seen := map[uint64]struct{}{}
	var walk func(slot []byte, level int, base uint64, shared bool) error
	walk = func(slot []byte, level int, base uint64, shared bool) error {
		p := getPtr(slot)
		if p.blk == 0 {
			return nil
		}
		if _, dup := seen[p.blk]; dup {
			return &CorruptError{Object: in.name, What: "map", Block: p.blk, Reason: "block referenced twice in one object"}
		}
		seen[p.blk] = struct{}{}
		rc, err := tx.rcGet(p.blk)
		if err != nil {
			return err
		}
		shared = shared || rc > 1
		if level == 0 {
			return fn(base, p, shared)
		}
		buf, err := tx.mapNode(p, in)
		if err != nil {
			return err
		}
		span := capBlocks(level - 1)
		for i := uint64(0); i < fanout; i++ {
			if err := walk(buf[i*ptrSize:(i+1)*ptrSize], level-1, base+i*span, shared); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(in.root[:], in.height, 0, false)
}

// Usage describes space use.
type Usage struct {
	DeviceBytes int64  // size of the device
	StoreBytes  int64  // bytes of the device the store's address space covers
	UsedBytes   int64  // bytes in used blocks (data and metadata, superblocks included)
	FreeBytes   int64  // DeviceBytes - UsedBytes
	SharedBytes int64  // bytes in data blocks used by more than one object
	Objects     uint64 // number of objects
}

// Usage computes space use. It walks the refcounts and every object's
// map, so it takes time proportional to the metadata.
func (tx *Tx) Usage() (Usage, error) {
	if err := tx.check(false); err != nil {
		return Usage{}, err
	}
	u := Usage{DeviceBytes: tx.s.dev.Size(), StoreBytes: int64(tx.m.nblocks) * BlockSize, Objects: tx.m.objects}
	used := int64(firstBlock)
	for leaf := uint64(0); leaf*rcPerLeaf < tx.m.nblocks; leaf++ {
		_, b, err := tx.rcNodePtr(0, leaf)
		if err != nil {
			return u, err
		}
		if b == nil {
			continue
		}
		for i := 0; i < rcPerLeaf; i++ {
			if b[i*4] != 0 || b[i*4+1] != 0 || b[i*4+2] != 0 || b[i*4+3] != 0 {
				used++
			}
		}
	}
	u.UsedBytes = used * BlockSize
	u.FreeBytes = u.DeviceBytes - u.UsedBytes
	seen := map[uint64]struct{}{}
	var names []string
	if err := tx.List("", func(oi ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		return u, err
	}
	sort.Strings(names)
	for _, name := range names {
		in, err := tx.inode(name)
		if err != nil {
			return u, err
		}
		err = tx.walkData(in, func(l uint64, e ptr, shared bool) error {
			if shared {
				seen[e.blk] = struct{}{}
			}
			return nil
		})
		if err != nil {
			return u, err
		}
	}
	u.SharedBytes = int64(len(seen)) * BlockSize
	return u, nil
}
