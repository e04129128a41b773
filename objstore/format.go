package objstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
)

// BlockSize is the size of every block of a store, data and metadata.
const BlockSize = 4096

const (
	ptrSize     = 16                  // encoded block pointer: blk u64, crc u32, pad u32
	fanout      = BlockSize / ptrSize // entries of a map node and of a refcount branch node
	rcPerLeaf   = BlockSize / 4       // refcounts (u32) in a refcount leaf
	maxHeight   = 6                   // object map height limit (256^6 blocks = 1 EiB)
	maxRCHeight = 6                   // refcount tree height limit
	maxNameLen  = 1024                // longest object name in bytes
	maxDepth    = 48                  // names tree depth limit (corruption guard)
	metaMagic   = "AMBRSTOR"          // first bytes of a superblock
	version     = 1                   // on-disk format version
	metaLen     = 84                  // bytes of a superblock covered by its checksum, plus the checksum
	firstBlock  = 2                   // blocks 0 and 1 are the two superblocks
	inodeLen    = 24                  // encoded inode length
	nodeMagic   = 0xA7B3              // names tree node magic
	leafKind    = 1                   // names tree leaf node
	branchKind  = 2                   // names tree branch node
	nodeHdr     = 8                   // names tree node header length
	dataCap     = 8 << 20             // dirty data kept in memory before it is written out
	directRun   = 16                  // full-block runs at least this long are written directly
	cacheBlocks = 16384               // metadata blocks kept in the cache
	growChunk   = 4 << 20             // minimum device growth
	maxProblems = 1000                // Fsck stops listing problems after this many
	maxFreeList = 1 << 20             // released blocks remembered for reuse
)

// castagnoli is built on first use: every program that links objstore
// (the vmm CLI) would otherwise pay for the table at start-up.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli()) }

// ptr is a pointer to a block with the CRC32C of its contents.
type ptr struct {
	blk uint64
	crc uint32
}

func getPtr(b []byte) ptr {
	return ptr{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:])}
}

func putPtr(b []byte, p ptr) {
	binary.LittleEndian.PutUint64(b, p.blk)
	binary.LittleEndian.PutUint32(b[8:], p.crc)
	binary.LittleEndian.PutUint32(b[12:], 0)
}

// meta is a superblock: the root of one committed state.
type meta struct {
	txid     uint64
	nblocks  uint64 // blocks in use by the store's address space (high-water mark)
	names    ptr    // names tree root
	rc       ptr    // refcount tree root
	rcHeight uint32
	freeHint uint64 // where the next-fit allocator resumes
	objects  uint64
}

func (m *meta) encode() []byte {
	b := make([]byte, BlockSize)
	copy(b, metaMagic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], version)
	le.PutUint32(b[12:], BlockSize)
	le.PutUint64(b[16:], m.txid)
	le.PutUint64(b[24:], m.nblocks)
	putPtr(b[32:], m.names)
	putPtr(b[48:], m.rc)
	le.PutUint32(b[60:], m.rcHeight) // overlaps the pad of the rc pointer on purpose
	le.PutUint64(b[64:], m.freeHint)
	le.PutUint64(b[72:], m.objects)
	le.PutUint32(b[80:], checksum(b[:80]))
	return b
}

func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) < metaLen || string(b[:8]) != metaMagic {
		return m, errors.New("bad magic")
	}
	le := binary.LittleEndian
	if le.Uint32(b[80:]) != checksum(b[:80]) {
		return m, errors.New("checksum mismatch")
	}
	if v := le.Uint32(b[8:]); v != version {
		return m, fmt.Errorf("unsupported format version %d", v)
	}
	if bs := le.Uint32(b[12:]); bs != BlockSize {
		return m, fmt.Errorf("unsupported block size %d", bs)
	}
	for _, c := range b[metaLen:] {
		if c != 0 {
			return m, errors.New("garbage after the superblock")
		}
	}
	m.txid = le.Uint64(b[16:])
	m.nblocks = le.Uint64(b[24:])
	m.names = ptr{le.Uint64(b[32:]), le.Uint32(b[40:])}
	m.rc = ptr{le.Uint64(b[48:]), le.Uint32(b[56:])}
	m.rcHeight = le.Uint32(b[60:])
	m.freeHint = le.Uint64(b[64:])
	m.objects = le.Uint64(b[72:])
	if m.nblocks < firstBlock || m.nblocks > 1<<48 {
		return m, fmt.Errorf("bad block count %d", m.nblocks)
	}
	if m.rcHeight > maxRCHeight {
		return m, fmt.Errorf("bad refcount tree height %d", m.rcHeight)
	}
	if m.rc.blk != 0 && m.rcHeight == 0 {
		return m, errors.New("refcount root without height")
	}
	return m, nil
}

// inode is the value stored in the names tree for an object.
type inode struct {
	name    string
	size    int64
	root    [ptrSize]byte // pointer to the map root (height>0) or the only data block (height 0)
	height  int
	dirty   bool
	deleted bool
}

func (in *inode) encode() []byte {
	b := make([]byte, inodeLen)
	binary.LittleEndian.PutUint64(b, uint64(in.size))
	copy(b[8:20], in.root[:12])
	b[20] = byte(in.height)
	return b
}

func decodeInode(name string, b []byte) (*inode, error) {
	if len(b) != inodeLen {
		return nil, fmt.Errorf("object %q: bad inode length %d", name, len(b))
	}
	in := &inode{name: name, size: int64(binary.LittleEndian.Uint64(b)), height: int(b[20])}
	copy(in.root[:12], b[8:20])
	if in.size < 0 || in.height > maxHeight || b[21] != 0 || b[22] != 0 || b[23] != 0 {
		return nil, fmt.Errorf("object %q: bad inode", name)
	}
	return in, nil
}

// capBlocks is the number of logical blocks a map of height h covers.
func capBlocks(h int) uint64 {
	c := uint64(1)
	for i := 0; i < h; i++ {
		c *= fanout
	}
	return c
}

// rcCap is the number of blocks a refcount tree of height h covers.
func rcCap(h uint32) uint64 {
	if h == 0 {
		return 0
	}
	c := uint64(rcPerLeaf)
	for i := uint32(1); i < h; i++ {
		c *= fanout
	}
	return c
}

// Errors returned by the store.
var (
	ErrNotFound  = errors.New("objstore: object not found")
	ErrExists    = errors.New("objstore: object already exists")
	ErrTxDone    = errors.New("objstore: transaction already committed or aborted")
	ErrReadOnly  = errors.New("objstore: read-only transaction")
	ErrClosed    = errors.New("objstore: store is closed")
	ErrBadName   = errors.New("objstore: invalid object name")
	ErrFailed    = errors.New("objstore: an earlier commit failed; reopen the store")
	ErrNotStore  = errors.New("objstore: not an object store (no valid superblock)")
	ErrBadOffset = errors.New("objstore: negative offset or size")
)

// CorruptError reports a block whose checksum or structure is wrong.
type CorruptError struct {
	Object string // object name, "" for store metadata
	What   string // what the block is: "data block 12", "map node", "names node", ...
	Block  uint64 // device block number
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Object != "" {
		return fmt.Sprintf("objstore: object %q: %s at device block %d: %s", e.Object, e.What, e.Block, e.Reason)
	}
	return fmt.Sprintf("objstore: %s at device block %d: %s", e.What, e.Block, e.Reason)
}

func validName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: contains NUL", ErrBadName)
		}
	}
	return nil
}
