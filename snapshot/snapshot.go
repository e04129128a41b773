// Package snapshot is the layout of whole-VM snapshots in an objstore
// store: which objects a snapshot is made of, how its metadata is encoded
// and versioned, and how guest memory is written (zero pages as holes) and
// found again as page-aligned file extents a restore maps MAP_PRIVATE.
//
// A snapshot NAME is the objects
//
//	snap/NAME/meta     JSON Meta: format version, parent, sizes, time
//	snap/NAME/vcpu     the vCPU state, encoded by the VMM (opaque here)
//	snap/NAME/devices  the devices' states, encoded by the VMM
//	snap/NAME/mem      guest RAM from guest-physical 0, zero pages as holes
//	snap/NAME/disk     a clone of the VM's disk object (O(1), copy-on-write)
//
// all written in the caller's one write transaction, so a snapshot is in
// the store whole or not at all. The meta object is written last and read
// first: a reader refuses a snapshot whose format version it does not know
// before it looks at anything else.
package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strings"
	"time"

	"github.com/amberos/amber/objstore"
)

// Version is the snapshot format this package writes and reads. It
// changes whenever the meaning of any snapshot object changes (including
// the VMM's encoding of vCPU and device state).
const Version = 1

// Prefix is the name space of snapshots in a store.
const Prefix = "snap/"

// PageSize is the unit of guest memory in the mem object; the store's
// block size, so each page is one block and page-aligned in the file.
const PageSize = objstore.BlockSize

// Object names within a snapshot.
const (
	ObjMeta    = "meta"
	ObjVCPU    = "vcpu"
	ObjDevices = "devices"
	ObjMem     = "mem"
	ObjDisk    = "disk"
)

// Meta describes a snapshot. It is the snapshot's meta object, in JSON.
type Meta struct {
	Format  int       `json:"format"` // Version when written
	Name    string    `json:"name"`
	Parent  string    `json:"parent,omitempty"` // the snapshot this one's memory is incremental to; "" for a full one
	Created time.Time `json:"created"`
	// Image is the path of the image the VM booted (for crash-report
	// symbols and to check a restore runs the same kernel), ImageSize
	// its size then.
	Image     string `json:"image"`
	ImageSize int64  `json:"imageSize"`
	MemBytes  int64  `json:"memBytes"`           // guest RAM size
	MemStored int64  `json:"memStored"`          // bytes of pages written by this snapshot (an incremental one shares the rest with its parent)
	MemDirty  int64  `json:"memDirty,omitempty"` // an incremental snapshot's pages written since its parent, in bytes
	DiskBytes int64  `json:"diskBytes"`          // size of the disk object; 0: no disk
	// TSCHz and BootTSC are the guest's time base: the TSC frequency the
	// guest computes with, and the guest TSC at its boot.
	TSCHz   uint64 `json:"tscHz"`
	BootTSC uint64 `json:"bootTSC"`
}

// FormatError is the error for a snapshot written in another format
// version (or not a snapshot): it is refused, never misread.
type FormatError struct {
	Name   string
	Format int // 0: unreadable meta
	Reason string
}

func (e *FormatError) Error() string {
	if e.Format != 0 && e.Format != Version {
		return fmt.Sprintf("snapshot %q has format version %d; this vmm reads version %d only (restore it with the vmm that took it)", e.Name, e.Format, Version)
	}
	return fmt.Sprintf("snapshot %q: %s", e.Name, e.Reason)
}

// ErrNotFound is wrapped by errors about a snapshot that does not exist.
var ErrNotFound = errors.New("no such snapshot")

// ErrExists is wrapped by errors about a snapshot name already taken.
var ErrExists = errors.New("snapshot already exists")

// CheckName checks a snapshot name: 1 to 128 bytes of letters, digits,
// '.', '-' and '_', not starting with '.' (a name is part of object names
// and of vm.store@NAME on the command line).
func CheckName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("snapshot name %q: want 1 to 128 characters", name)
	}
	if name[0] == '.' {
		return fmt.Errorf("snapshot name %q: must not start with '.'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("snapshot name %q: %q is not allowed (letters, digits, '.', '-', '_')", name, c)
		}
	}
	return nil
}

// Object returns the name of a snapshot's object.
func Object(name, obj string) string { return Prefix + name + "/" + obj }

// Contents is what a VMM hands Write: everything but the disk, which
// Write clones from the store's own object.
type Contents struct {
	Meta    Meta
	VCPU    []byte // the VMM's encoding of the vCPU state
	Devices []byte // the VMM's encoding of the devices' states
	// Memory is guest RAM from guest-physical 0; its length is a
	// multiple of PageSize.
	Memory []byte
	// Touched, when not nil, is a bitmap of the pages of Memory that
	// may be non-zero (bit i%64 of word i/64: page i); the others are
	// known to be zero and are not read (reading untouched memory maps
	// a page for each). nil: every page is read.
	Touched []uint64
	// DiskObject is the store object holding the VM's disk ("" for
	// none): it is cloned into the snapshot.
	DiskObject string
	// Dirty, for an incremental snapshot (Meta.Parent set), is a bitmap
	// of the pages written since snapshot Meta.Parent was taken of this
	// VM (or restored into it): the snapshot's memory is an O(1) clone
	// of the parent's with only those pages written over it.
	Dirty []uint64
}

// Write adds snapshot c.Meta.Name to the store in tx, a write
// transaction the caller commits (or aborts: then nothing of it exists).
// It fills in Format, Created, MemBytes, MemStored and DiskBytes.
func Write(tx *objstore.Tx, c *Contents) error {
	m := c.Meta
	if err := CheckName(m.Name); err != nil {
		return err
	}
	if len(c.Memory)%PageSize != 0 {
		return fmt.Errorf("guest memory of %d bytes is not a whole number of pages", len(c.Memory))
	}
	if exists, err := Exists(tx, m.Name); err != nil {
		return err
	} else if exists {
		return fmt.Errorf("%q: %w (delete it first, or choose another name)", m.Name, ErrExists)
	}
	m.Format = Version
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	m.MemBytes = int64(len(c.Memory))
	for _, o := range []struct {
		name string
		data []byte
	}{{ObjVCPU, c.VCPU}, {ObjDevices, c.Devices}} {
		if err := putObject(tx, Object(m.Name, o.name), o.data); err != nil {
			return err
		}
	}
	if c.Touched != nil && len(c.Touched) < (len(c.Memory)/PageSize+63)/64 {
		return fmt.Errorf("a bitmap of %d words for %d pages of memory", len(c.Touched), len(c.Memory)/PageSize)
	}
	var stored int64
	var err error
	if m.Parent != "" {
		stored, err = writeIncremental(tx, m.Parent, Object(m.Name, ObjMem), c.Memory, c.Dirty)
		m.MemDirty = 0
		for _, w := range c.Dirty {
			m.MemDirty += int64(bits.OnesCount64(w)) * PageSize
		}
	} else {
		stored, err = writeMemory(tx, Object(m.Name, ObjMem), c.Memory, c.Touched)
	}
	if err != nil {
		return err
	}
	m.MemStored = stored
	if c.DiskObject != "" {
		if err := tx.Clone(c.DiskObject, Object(m.Name, ObjDisk)); err != nil {
			return fmt.Errorf("cloning the disk: %w", err)
		}
		info, err := tx.Stat(c.DiskObject)
		if err != nil {
			return err
		}
		m.DiskBytes = info.Size
	}
	b, err := json.MarshalIndent(&m, "", "\t")
	if err != nil {
		return err
	}
	if err := putObject(tx, Object(m.Name, ObjMeta), b); err != nil {
		return err
	}
	c.Meta = m
	return nil
}

func putObject(tx *objstore.Tx, name string, data []byte) error {
	o, err := tx.Create(name)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	if _, err := o.WriteAt(data, 0); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

var zeroPage [PageSize]byte

// writeMemory writes mem into a new object, each run of non-zero pages
// in one write and zero pages left as holes (no space; they read, and
// map, as zeros). It returns the bytes written.
func writeMemory(tx *objstore.Tx, name string, mem []byte, touched []uint64) (int64, error) {
	o, err := tx.Create(name)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", name, err)
	}
	if err := o.Truncate(int64(len(mem))); err != nil {
		return 0, err
	}
	zero := func(p int) bool {
		if i := p / PageSize; touched != nil && touched[i/64]&(1<<(i%64)) == 0 {
			return true
		}
		return bytes.Equal(mem[p:p+PageSize], zeroPage[:])
	}
	var stored int64
	for p := 0; p < len(mem); {
		if zero(p) {
			p += PageSize
			continue
		}
		q := p + PageSize
		for q < len(mem) && !zero(q) {
			q += PageSize
		}
		if _, err := o.WriteAt(mem[p:q], int64(p)); err != nil {
			return 0, fmt.Errorf("writing guest memory at %#x: %w", p, err)
		}
		stored += int64(q - p)
		p = q
	}
	return stored, nil
}

// writeIncremental makes name a clone of snapshot parent's memory (O(1):
// the blocks are shared) and writes the dirty pages of mem over it: the
// non-zero ones, and the zero ones where the parent has data. It returns
// the bytes written.
func writeIncremental(tx *objstore.Tx, parent, name string, mem []byte, dirty []uint64) (int64, error) {
	pages := len(mem) / PageSize
	if len(dirty) < (pages+63)/64 {
		return 0, fmt.Errorf("a dirty bitmap of %d words for %d pages of memory", len(dirty), pages)
	}
	pm, err := ReadMeta(tx, parent)
	if err != nil {
		return 0, fmt.Errorf("the parent snapshot: %w", err)
	}
	if pm.MemBytes != int64(len(mem)) {
		return 0, fmt.Errorf("the parent snapshot %q has %d bytes of memory, this VM %d", parent, pm.MemBytes, len(mem))
	}
	pe, err := MemoryExtents(tx, pm)
	if err != nil {
		return 0, err
	}
	if err := tx.Clone(Object(parent, ObjMem), name); err != nil {
		return 0, fmt.Errorf("cloning the parent's memory: %w", err)
	}
	o, err := tx.Open(name)
	if err != nil {
		return 0, err
	}
	// Which pages the parent stores (the others are holes: zero).
	stored := make([]uint64, (pages+63)/64)
	for _, e := range pe {
		for p := e.GuestAddr / PageSize; p < (e.GuestAddr+e.Length)/PageSize; p++ {
			stored[p/64] |= 1 << (p % 64)
		}
	}
	write := func(i int) bool {
		if dirty[i/64]&(1<<(i%64)) == 0 {
			return false
		}
		return stored[i/64]&(1<<(i%64)) != 0 || !bytes.Equal(mem[i*PageSize:(i+1)*PageSize], zeroPage[:])
	}
	var n int64
	for i := 0; i < pages; {
		if w := dirty[i/64]; w == 0 && i%64 == 0 {
			i += 64
			continue
		}
		if !write(i) {
			i++
			continue
		}
		j := i + 1
		for j < pages && write(j) {
			j++
		}
		if _, err := o.WriteAt(mem[i*PageSize:j*PageSize], int64(i)*PageSize); err != nil {
			return 0, fmt.Errorf("writing guest memory at %#x: %w", i*PageSize, err)
		}
		n += int64(j-i) * PageSize
		i = j
	}
	return n, nil
}

// Exists reports whether snapshot name is in the store.
func Exists(tx *objstore.Tx, name string) (bool, error) {
	_, err := tx.Stat(Object(name, ObjMeta))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, objstore.ErrNotFound) {
		return false, nil
	}
	return false, err
}

// ReadMeta reads and checks a snapshot's metadata: a snapshot of another
// format version is a *FormatError.
func ReadMeta(tx *objstore.Tx, name string) (*Meta, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	b, err := readObject(tx, Object(name, ObjMeta), 1<<20)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("%q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	// The version first, alone: a future format may change anything else.
	var v struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, &FormatError{Name: name, Reason: fmt.Sprintf("unreadable metadata: %v", err)}
	}
	if v.Format != Version {
		if v.Format == 0 {
			return nil, &FormatError{Name: name, Reason: "metadata without a format version"}
		}
		return nil, &FormatError{Name: name, Format: v.Format}
	}
	m := new(Meta)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, &FormatError{Name: name, Format: v.Format, Reason: fmt.Sprintf("unreadable metadata: %v", err)}
	}
	if m.Name != name {
		return nil, &FormatError{Name: name, Format: v.Format, Reason: fmt.Sprintf("its metadata names snapshot %q", m.Name)}
	}
	if m.MemBytes <= 0 || m.MemBytes%PageSize != 0 {
		return nil, &FormatError{Name: name, Format: v.Format, Reason: fmt.Sprintf("memory size %d is not a positive whole number of pages", m.MemBytes)}
	}
	return m, nil
}

// ReadState returns a snapshot's vCPU and device state objects.
func ReadState(tx *objstore.Tx, name string) (vcpu, devices []byte, err error) {
	if vcpu, err = readObject(tx, Object(name, ObjVCPU), 16<<20); err != nil {
		return nil, nil, err
	}
	if devices, err = readObject(tx, Object(name, ObjDevices), 16<<20); err != nil {
		return nil, nil, err
	}
	return vcpu, devices, nil
}

func readObject(tx *objstore.Tx, name string, limit int64) ([]byte, error) {
	o, err := tx.Open(name)
	if err != nil {
		return nil, err
	}
	if o.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a snapshot's object may have", name, o.Size(), limit)
	}
	b := make([]byte, o.Size())
	if n, err := o.ReadAt(b, 0); err != nil && !(err == io.EOF && n == len(b)) {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return b, nil
}

// Extent is a run of guest memory stored in the store file: Length bytes
// of guest-physical memory at GuestAddr are at file offset FileOffset.
// All three are multiples of PageSize; memory in no extent is zero.
type Extent struct {
	GuestAddr, FileOffset, Length int64
}

// MemoryExtents returns where a snapshot's guest memory lies in the
// store file, for mapping it MAP_PRIVATE. The offsets stay valid while
// the snapshot exists (its blocks are referenced and never rewritten).
// The blocks' checksums are not verified: a restore that maps memory
// lazily reads it only as the guest touches it.
func MemoryExtents(tx *objstore.Tx, m *Meta) ([]Extent, error) {
	o, err := tx.Open(Object(m.Name, ObjMem))
	if err != nil {
		return nil, err
	}
	if o.Size() != m.MemBytes {
		return nil, &FormatError{Name: m.Name, Format: m.Format, Reason: fmt.Sprintf("memory object of %d bytes, metadata says %d", o.Size(), m.MemBytes)}
	}
	es, err := o.Extents()
	if err != nil {
		return nil, err
	}
	var out []Extent
	for _, e := range es {
		if e.Hole {
			continue
		}
		if e.Logical%PageSize != 0 || e.Device%PageSize != 0 || e.Length%PageSize != 0 {
			return nil, fmt.Errorf("snapshot %q: memory extent at %#x is not page-aligned (file offset %#x, %d bytes)", m.Name, e.Logical, e.Device, e.Length)
		}
		out = append(out, Extent{GuestAddr: e.Logical, FileOffset: e.Device, Length: e.Length})
	}
	return out, nil
}

// List returns the metadata of every snapshot in the store, oldest
// first. A snapshot that cannot be read is listed with only its name and
// the error.
func List(tx *objstore.Tx) ([]Listed, error) {
	var names []string
	err := tx.List(Prefix, func(oi objstore.ObjectInfo) error {
		rest := strings.TrimPrefix(oi.Name, Prefix)
		if n, obj, ok := strings.Cut(rest, "/"); ok && obj == ObjMeta {
			names = append(names, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, n := range names {
		m, err := ReadMeta(tx, n)
		l := Listed{Name: n, Err: err}
		if m != nil {
			l.Meta = *m
		}
		out = append(out, l)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Meta.Created.Before(out[j].Meta.Created) })
	return out, nil
}

// Listed is one entry of List.
type Listed struct {
	Name string
	Meta Meta  // zero when Err is set
	Err  error // why the snapshot cannot be restored
}

// Delete removes snapshot name's objects.
func Delete(tx *objstore.Tx, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	found := false
	for _, obj := range []string{ObjMeta, ObjVCPU, ObjDevices, ObjMem, ObjDisk} {
		err := tx.Delete(Object(name, obj))
		if errors.Is(err, objstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		found = true
	}
	if !found {
		return fmt.Errorf("%q: %w", name, ErrNotFound)
	}
	return nil
}

// Remove deletes the named snapshots in tx, all of them or, on an
// error, none (the caller aborts tx): a name that is not a snapshot in
// the store fails it, naming the name. Deleting a snapshot loses nothing
// of the others: an incremental snapshot's mem is a clone of its
// parent's (blocks shared, reference-counted), so it keeps every page
// when the parent goes, and a VM restored from it (or running from it)
// takes its next snapshot in full. Remove returns the snapshots left
// whose parent it deleted (their meta keeps the parent's name), for the
// caller to mention.
func Remove(tx *objstore.Tx, names []string) (orphans []string, err error) {
	gone := map[string]bool{}
	for _, n := range names {
		if err := CheckName(n); err != nil {
			return nil, err
		}
		if gone[n] {
			continue
		}
		ok, err := Exists(tx, n)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%q: %w", n, ErrNotFound)
		}
		gone[n] = true
	}
	for n := range gone {
		if err := Delete(tx, n); err != nil {
			return nil, fmt.Errorf("deleting %q: %w", n, err)
		}
	}
	left, err := List(tx)
	if err != nil {
		return nil, err
	}
	for _, l := range left {
		if l.Err == nil && gone[l.Meta.Parent] {
			orphans = append(orphans, l.Name)
		}
	}
	return orphans, nil
}
