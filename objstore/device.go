package objstore

import (
	"errors"
	"io"
	"sync"
)

// BlockDevice is the storage a Store lives on. Offsets and lengths used by
// the store are multiples of BlockSize. Implementations must allow
// concurrent calls of ReadAt with each other and with WriteAt.
type BlockDevice interface {
	// ReadAt reads len(p) bytes at off; reading past Size is an error.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes len(p) bytes at off, which is below Size.
	WriteAt(p []byte, off int64) (int, error)
	// Flush is the durability barrier: when it returns, every write issued
	// before it is durable. Writes issued since the last Flush may be lost,
	// torn or reordered by a crash.
	Flush() error
	// Size returns the device size in bytes.
	Size() int64
	// Grow makes the device at least size bytes long; new space reads as zeros.
	Grow(size int64) error
}

// LayeredDevice is a BlockDevice whose blocks [2, BaseBlocks()) belong to
// a read-only base store: a clone store (filedev's overlay) starts as a
// copy of the base's superblocks, so it sees every object of the base, and
// each change it makes is copy-on-write into its own blocks past the
// base. The store never allocates, and so never writes, a block below
// BaseBlocks: blocks of the base it frees stay unused. Refcounts and Fsck
// need nothing else (the base's refcount tree is the clone's to begin
// with).
type LayeredDevice interface {
	BlockDevice
	BaseBlocks() uint64
}

// MemDevice is a BlockDevice in memory. It is useful for tests and for a
// guest that keeps a store in RAM.
type MemDevice struct {
	mu      sync.RWMutex
	data    []byte
	Flushes int // number of Flush calls
}

// NewMemDevice returns a MemDevice holding a copy of image.
func NewMemDevice(image []byte) *MemDevice {
	return &MemDevice{data: append([]byte(nil), image...)}
}

// Bytes returns a copy of the device contents.
func (m *MemDevice) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data...)
}

var errOutOfRange = errors.New("objstore: device access out of range")

// ReadAt implements BlockDevice.
func (m *MemDevice) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off < 0 || off > int64(len(m.data)) {
		return 0, errOutOfRange
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// WriteAt implements BlockDevice.
func (m *MemDevice) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, errOutOfRange
	}
	return copy(m.data[off:], p), nil
}

// Flush implements BlockDevice.
func (m *MemDevice) Flush() error {
	m.mu.Lock()
	m.Flushes++
	m.mu.Unlock()
	return nil
}

// Size implements BlockDevice.
func (m *MemDevice) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.data))
}

// Grow implements BlockDevice.
func (m *MemDevice) Grow(size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	return nil
}
