package filedev

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// A clone store (an overlay) is a file that begins with a header block
// naming a base store, followed by the clone's own blocks:
//
//	file block 0       header (overlayMagic)
//	file blocks 1, 2   device blocks 0 and 1: the clone's superblocks
//	file block 3 + k   device block floor + k
//
// Device blocks [2, floor) are the base's, read through the base file
// (opened read-only with the shared lock, so no writer can change it
// while a clone is open); objstore never writes them (File implements
// objstore.LayeredDevice). The clone starts as a copy of the base's two
// superblocks: it holds every object of the base, shares every block, and
// copies on write into its own blocks. The header records a hash of the
// base's superblocks when the clone was made: a base that has
// committed since (which may have reused blocks the clone still reads) is
// refused, not misread.
const (
	overlayMagic   = "AMBROVLY"
	overlayVersion = 1
	blockSize      = 4096
	headerBlocks   = 3 // the header and the two superblocks
)

// Header layout (little-endian): magic [0:8], version u32 [8:12], pad,
// floor u64 [16:24] (blocks), the SHA-256 of the base's two superblock
// blocks [24:56] (not a CRC: a block holding its own CRC32C has the same
// CRC whatever it says), path length u16 [56:58], the base's absolute
// path [58:...], and a CRC32C of bytes [0:4092) at [4092:4096).
const (
	hdrFloor   = 16
	hdrBaseSum = 24
	hdrPathLen = 56
	hdrPath    = 58
	hdrSum     = blockSize - 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OverlayError is returned for a clone store that cannot be used: a bad
// header, or a base that changed or is missing.
type OverlayError struct {
	Path   string
	Reason string
}

func (e *OverlayError) Error() string { return fmt.Sprintf("%s: clone store: %s", e.Path, e.Reason) }

// CreateOverlay makes path a clone store of the store base: it holds
// every object of base as of now, and changes go to path only. base is
// opened read-only (shared lock: it fails while a writer has base open).
// path must not exist.
func CreateOverlay(path, base string) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	if len(abs) > hdrSum-hdrPath {
		return fmt.Errorf("%s: path too long for a clone's header", abs)
	}
	b, err := Open(abs, Options{ReadOnly: true, Shared: true})
	if err != nil {
		return err
	}
	defer b.Close()
	floor := b.Size() / blockSize
	if floor < 2 {
		return fmt.Errorf("%s: not a store (%d bytes)", base, b.Size())
	}
	sbs := make([]byte, 2*blockSize)
	if _, err := b.ReadAt(sbs, 0); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	hdr := make([]byte, blockSize)
	copy(hdr, overlayMagic)
	binary.LittleEndian.PutUint32(hdr[8:], overlayVersion)
	binary.LittleEndian.PutUint64(hdr[hdrFloor:], uint64(floor))
	sum := sha256.Sum256(sbs)
	copy(hdr[hdrBaseSum:], sum[:])
	binary.LittleEndian.PutUint16(hdr[hdrPathLen:], uint16(len(abs)))
	copy(hdr[hdrPath:], abs)
	binary.LittleEndian.PutUint32(hdr[hdrSum:], crc32.Checksum(hdr[:hdrSum], castagnoli))

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err = f.WriteAt(append(hdr, sbs...), 0); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// isOverlay reports whether the open file f begins with a clone's header.
func isOverlay(f *os.File, size int64) bool {
	if size < headerBlocks*blockSize {
		return false
	}
	var m [8]byte
	if _, err := f.ReadAt(m[:], 0); err != nil {
		return false
	}
	return string(m[:]) == overlayMagic
}

// openOverlay reads the header of d (a clone store) and opens its base.
func (d *File) openOverlay(path string, fileSize int64) error {
	hdr := make([]byte, blockSize)
	if _, err := d.f.ReadAt(hdr, 0); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return &OverlayError{Path: path, Reason: fmt.Sprintf(format, args...)}
	}
	if crc32.Checksum(hdr[:hdrSum], castagnoli) != binary.LittleEndian.Uint32(hdr[hdrSum:]) {
		return bad("the header's checksum is wrong")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != overlayVersion {
		return bad("format version %d, this program reads version %d", v, overlayVersion)
	}
	floor := int64(binary.LittleEndian.Uint64(hdr[hdrFloor:]))
	n := int(binary.LittleEndian.Uint16(hdr[hdrPathLen:]))
	if n == 0 || hdrPath+n > hdrSum || floor < 2 || floor > 1<<48 {
		return bad("bad header")
	}
	basePath := string(hdr[hdrPath : hdrPath+n])
	base, err := Open(basePath, Options{ReadOnly: true, Shared: true})
	if err != nil {
		return bad("its base: %v", err)
	}
	sbs := make([]byte, 2*blockSize)
	if base.Size() < floor*blockSize {
		base.Close()
		return bad("its base %s is %d bytes, shorter than when the clone was made (%d)", basePath, base.Size(), floor*blockSize)
	}
	if _, err := base.ReadAt(sbs, 0); err != nil {
		base.Close()
		return bad("its base %s: %v", basePath, err)
	}
	if sum := sha256.Sum256(sbs); !bytes.Equal(sum[:], hdr[hdrBaseSum:hdrBaseSum+32]) {
		base.Close()
		return bad("its base %s has changed since the clone was made (it committed a transaction, which may reuse blocks the clone reads)", basePath)
	}
	d.base = base
	d.basePath = basePath
	d.floor = floor * blockSize
	d.size.Store(d.floor + fileSize - headerBlocks*blockSize)
	return nil
}

// BaseBlocks implements objstore.LayeredDevice: 0 for a plain store.
func (d *File) BaseBlocks() uint64 { return uint64(d.floor / blockSize) }

// Base returns the path of a clone store's base, "" for a plain store.
func (d *File) Base() string { return d.basePath }

// locate returns where the device's bytes at off are: the file (with the
// offset there) and how many bytes from off lie in that same place.
func (d *File) locate(off int64) (f *File, fileOff, n int64) {
	const inf = 1 << 62
	switch {
	case d.base == nil:
		return d, off, inf
	case off < 2*blockSize:
		return d, off + blockSize, 2*blockSize - off
	case off < d.floor:
		return d.base, off, d.floor - off
	default:
		return d, off - d.floor + headerBlocks*blockSize, inf
	}
}

// MapRange returns where the device's bytes [off, off+n) begin in a file
// that can be mapped: its descriptor, the offset there, and how many of
// the bytes are there contiguously (at most n). A clone store's blocks of
// its base are in the base's file, so a clone maps them straight from it.
func (d *File) MapRange(off, n int64) (fd uintptr, fileOff, length int64) {
	f, fo, k := d.locate(off)
	if f != d {
		return f.MapRange(fo, min(n, k))
	}
	return d.f.Fd(), fo, min(n, k)
}

func (d *File) rw(p []byte, off int64, write bool) (int, error) {
	done := 0
	for done < len(p) {
		f, fo, k := d.locate(off + int64(done))
		end := len(p)
		if int64(end-done) > k {
			end = done + int(k)
		}
		var n int
		var err error
		switch {
		case f != d && write:
			return done, fmt.Errorf("filedev: write at %#x: a block of the clone's read-only base", off+int64(done))
		case f != d:
			n, err = f.ReadAt(p[done:end], fo)
		case write:
			n, err = d.f.WriteAt(p[done:end], fo)
		default:
			n, err = d.f.ReadAt(p[done:end], fo)
		}
		done += n
		if err != nil {
			if errors.Is(err, io.EOF) && done == len(p) {
				err = nil
			}
			return done, err
		}
	}
	return done, nil
}

func (d *File) closeBase() error {
	if d.base == nil {
		return nil
	}
	return d.base.Close()
}
