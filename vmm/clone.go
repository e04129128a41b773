package vmm

import (
	"errors"
	"fmt"
	"os"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	snapfmt "github.com/amberos/amber/snapshot"
)

// openRestoreStore opens the store a restore writes to: rc.Store itself,
// or, with rc.Clone, a new clone store of it (filedev.CreateOverlay): the
// clone holds every object of the base, shares its blocks, and gets the
// VM's disk writes and later snapshots; the base is opened read-only with
// the shared lock, so any number of clones of one base run at once while
// no writer can change it. rc.Store then names the clone, for messages,
// and made is its path (to remove should the restore fail).
func openRestoreStore(rc *RestoreConfig) (_ *filedev.File, made string, err error) {
	if rc.Clone == "" {
		dev, err := filedev.Open(rc.Store, filedev.Options{})
		return dev, "", err
	}
	if _, err := os.Lstat(rc.Clone); err == nil {
		return nil, "", fmt.Errorf("%s exists: a clone store is made new (vmm restore %s@%s restores an existing clone)", rc.Clone, rc.Clone, rc.Snapshot)
	}
	if err := checkCloneBase(rc.Store, rc.Snapshot); err != nil {
		return nil, "", err
	}
	if err := filedev.CreateOverlay(rc.Clone, rc.Store); err != nil {
		return nil, "", err
	}
	dev, err := filedev.Open(rc.Clone, filedev.Options{})
	if err != nil {
		os.Remove(rc.Clone)
		return nil, "", err
	}
	made = rc.Clone
	rc.Store, rc.Clone = rc.Clone, ""
	return dev, made, nil
}

// checkCloneBase refuses, before a clone file is made, a base that does
// not hold the snapshot.
func checkCloneBase(store, name string) error {
	dev, err := filedev.Open(store, filedev.Options{ReadOnly: true, Shared: true})
	if err != nil {
		return err
	}
	defer dev.Close()
	s, err := objstore.Open(dev)
	if err != nil {
		return fmt.Errorf("%s: %w", store, err)
	}
	defer s.Close()
	return s.View(func(tx *objstore.Tx) error {
		_, err := snapfmt.ReadMeta(tx, name)
		if err != nil {
			return fmt.Errorf("%s@%s: %w", store, name, err)
		}
		return nil
	})
}

// mapExtent maps one extent of snapshot memory MAP_PRIVATE from the
// store's file or, for the blocks a clone store shares with its base,
// from the base's file: every clone of one snapshot maps the same pages
// of the page cache until it writes them.
func mapExtent(mem *GuestMemory, dev *filedev.File, e snapfmt.Extent) error {
	for e.Length > 0 {
		fd, off, n := dev.MapRange(e.FileOffset, e.Length)
		if n <= 0 {
			return errors.New("empty file range")
		}
		if err := mem.mapFile(uint64(e.GuestAddr), uint64(n), int(fd), off); err != nil {
			return err
		}
		e.GuestAddr += n
		e.FileOffset += n
		e.Length -= n
	}
	return nil
}
