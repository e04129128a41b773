package storecmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/amberos/amber/kernel/datafs"
	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/tools/build/outfile"
	"github.com/amberos/amber/vmm"
)

// The host's view of a guest's persistent file system (kernel/datafs):
// FILE:/data/PATH names PATH in the file system on the disk FILE.

// dataPrefix is how a file system path is spelled after FILE: the
// guest's default mount point, whatever the guest mounts it as.
const dataPrefix = ":/data"

// splitData splits "FILE:/data/PATH" into FILE and PATH ("" for the
// root); ok is false for a plain store argument.
func splitData(arg string) (file, p string, ok bool) {
	i := strings.LastIndex(arg, dataPrefix)
	if i <= 0 {
		return "", "", false
	}
	rest := arg[i+len(dataPrefix):]
	if rest != "" && rest[0] != '/' {
		return "", "", false
	}
	if _, err := os.Stat(arg); err == nil {
		return "", "", false // a store whose own name has ":/data" in it
	}
	return arg[:i], datafs.Clean(rest), true
}

// fixedDisk is a disk: its size is the disk's, so the store in it never
// grows it (the guest would see another disk).
type fixedDisk struct{ vmm.BlockBackend }

func (d fixedDisk) Grow(size int64) error {
	if size > d.Size() {
		return fmt.Errorf("the disk is full (%d bytes): %w", d.Size(), syscall.ENOSPC)
	}
	return nil
}

// openData opens the file system on FILE's disk: the raw disk image FILE
// (vmm run --disk FILE), or the disk object vm/disk of the store file
// FILE (our VMM's vm.store), whose reads and writes go to that object
// and whose flushes commit the outer store, as the VMM's device does:
// the nested store's commit protocol then holds on the outer store, and
// a kill -9 of a put loses nothing a commit covered. The disk's lock
// (the one vmm run holds) is taken, shared to read, exclusive to write:
// a running VM's disk is refused rather than read or written under it.
func (c *cmd) openData(file string, write bool) (*datafs.FS, io.Closer, error) {
	var disk vmm.BlockBackend
	var err error
	if vmm.IsStoreDisk(file) {
		disk, err = vmm.OpenStoreDisk(file, !write)
	} else {
		disk, err = filedev.Open(file, filedev.Options{ReadOnly: !write, Shared: true})
		err = vmm.InUse(err)
	}
	if err != nil {
		return nil, nil, err
	}
	dev := fixedDisk{disk}
	open := objstore.Open
	if blank, err := isBlank(dev); err != nil {
		disk.Close()
		return nil, nil, fmt.Errorf("%s: reading the disk: %w", file, err)
	} else if blank && write {
		// A disk no guest has used yet (vmm store create --disk-size, or
		// a new raw image): made as the guest's first boot would.
		open = objstore.Create
	}
	s, err := open(dev)
	if err != nil {
		disk.Close()
		return nil, nil, fmt.Errorf("%s: %w (not a disk written by a guest's /data?)", file, err)
	}
	fs, err := datafs.Open(s, !write)
	if err != nil {
		disk.Close()
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return fs, disk, nil
}

// isBlank reports whether the disk's first blocks (where a store's
// superblocks are) are all zeros, as kernel/datafs decides in the guest.
func isBlank(d fixedDisk) (bool, error) {
	n := int64(2 * objstore.BlockSize)
	if d.Size() < n {
		return false, fmt.Errorf("the disk is too small (%d bytes)", d.Size())
	}
	b := make([]byte, n)
	if _, err := d.ReadAt(b, 0); err != nil {
		return false, err
	}
	for _, c := range b {
		if c != 0 {
			return false, nil
		}
	}
	return true, nil
}

func pathErr(op, p string, err error) error {
	return fmt.Errorf("%s /data/%s: %w", op, p, err)
}

func (c *cmd) dataLs(file, p string) error {
	fs, dev, err := c.openData(file, false)
	if err != nil {
		return err
	}
	defer dev.Close()
	defer fs.Close()
	m, size, err := fs.Stat(p)
	if err != nil {
		return pathErr("ls", p, err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	line := func(name string, m datafs.Meta, size int64) {
		if m.IsDir() {
			name += "/"
		}
		mt := time.Unix(0, m.Mtime).UTC().Format("2006-01-02 15:04:05")
		fmt.Fprintf(tw, "%v\t%d\t%s\t%s\n", os.FileMode(m.Mode&0o777)|modeType(m), size, mt, name)
	}
	if !m.IsDir() {
		line(p, m, size)
		return tw.Flush()
	}
	ents, err := fs.ReadDir(p)
	if err != nil {
		return pathErr("ls", p, err)
	}
	for _, e := range ents {
		line(e.Name, e.Meta, e.Size)
	}
	return tw.Flush()
}

func modeType(m datafs.Meta) os.FileMode {
	if m.IsDir() {
		return os.ModeDir
	}
	if m.IsLink() {
		return os.ModeSymlink
	}
	return 0
}

func (c *cmd) dataGet(file, p, dst string) error {
	fs, dev, err := c.openData(file, false)
	if err != nil {
		return err
	}
	defer dev.Close()
	defer fs.Close()
	b, err := fs.ReadFile(p)
	if err != nil {
		return pathErr("get", p, err)
	}
	if dst == "-" {
		_, err = c.stdout.Write(b)
		return err
	}
	f, err := outfile.Create(dst, outfile.Options{Inputs: []string{file}, InPlace: true})
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Commit()
}

func (c *cmd) dataPut(file, p, src string) error {
	if p == "" {
		return fmt.Errorf("put: /data is a directory")
	}
	var in io.Reader = c.stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return fmt.Errorf("%s is a directory", src)
		}
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	fs, dev, err := c.openData(file, true)
	if err != nil {
		return err
	}
	defer dev.Close()
	// The parent directories are made as needed (mkdir -p).
	if i := strings.LastIndex(p, "/"); i > 0 {
		if err := mkdirAll(fs, p[:i]); err != nil {
			fs.Abort()
			return err
		}
	}
	if err := fs.WriteFile(p, data, 0o644); err != nil {
		fs.Abort()
		return pathErr("put", p, err)
	}
	return fs.Close()
}

// MkdirData makes the directory p (and its parents) in the file system
// on FILE's disk, as put does for a file's; on a blank disk it makes the
// file system first. vmm test --disk makes the tests' TMPDIR so.
func MkdirData(file, p string) error {
	c := &cmd{}
	fs, dev, err := c.openData(file, true)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := mkdirAll(fs, datafs.Clean(p)); err != nil {
		fs.Abort()
		return err
	}
	return fs.Close()
}

// mkdirAll makes d and its parents, as mkdir -p.
func mkdirAll(fs *datafs.FS, d string) error {
	parts := strings.Split(d, "/")
	for i := 1; i <= len(parts); i++ {
		d := strings.Join(parts[:i], "/")
		if err := fs.Mkdir(d, 0o755); err != nil && err != syscall.EEXIST {
			return pathErr("mkdir", d, err)
		}
	}
	return nil
}

func (c *cmd) dataRm(file string, paths []string) error {
	fs, dev, err := c.openData(file, true)
	if err != nil {
		return err
	}
	defer dev.Close()
	for _, p := range paths {
		m, _, err := fs.Stat(p)
		if err == nil {
			err = fs.Remove(p, m.IsDir(), "")
		}
		if err != nil {
			fs.Abort()
			return pathErr("rm", p, err)
		}
	}
	return fs.Close()
}
