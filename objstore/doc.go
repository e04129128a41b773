// Package objstore is a transactional copy-on-write object store over a
// block device: one file (host) or disk (guest) holds named objects, such
// as a VM's disk and whole-VM snapshots, with
//
//   - transactions: one writer at a time, any number of readers that see
//     the committed state they began with; Commit returns when the
//     transaction is durable (two device flushes), Abort leaves no trace;
//   - crash safety: nothing a committed state can reach is overwritten, and
//     a commit becomes visible by writing one of two superblocks;
//   - O(1) clones (Clone) sharing extents, copied on a later write to either
//     (refcounted copy-on-write trees, after Rodeh and btrfs);
//   - 4 KiB data blocks, aligned in the device, whose layout Extents returns
//     so that a reader can mmap them; never-written ranges are holes;
//   - a CRC32C of every block in the pointer to it: a mismatch is a
//     *CorruptError naming the object and block, never wrong data;
//   - Fsck, which checks every checksum and that each block's refcount
//     equals the references to it.
//
// The package uses no os, cgo, mmap or background goroutines: the device
// is the BlockDevice interface. objstore/filedev provides a file-backed one
// with a writer lock across processes. FORMAT.md describes the on-disk
// format and the commit protocol.
//
// A typical use:
//
//	s, err := objstore.Open(dev)
//	err = s.Update(func(tx *objstore.Tx) error {
//		o, err := tx.Create("vm/disk")
//		if err != nil {
//			return err
//		}
//		_, err = o.WriteAt(data, 0)
//		return err
//	})
//	err = s.Update(func(tx *objstore.Tx) error { return tx.Clone("vm/disk", "snap/1/disk") })
package objstore
