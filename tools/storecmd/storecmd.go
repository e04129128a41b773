// Package storecmd is the command-line interface to objstore stores
// ("vmm store ..."). Each command runs as one transaction.
package storecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amberos/amber/objstore"
	"github.com/amberos/amber/objstore/filedev"
	"github.com/amberos/amber/tools/build/outfile"
	"github.com/amberos/amber/vmm"
)

const usage = `usage: vmm store COMMAND FILE [ARGS]

An object store is one file holding named objects (a VM's disk, its
snapshots) with transactions, copy-on-write clones and checksums.
Every command is one transaction: it happens completely or not at all.

commands:
  create FILE                 create a new, empty store file (fails if FILE exists)
  create FILE --disk-size SIZE
                              ... holding a VM disk of SIZE bytes (K, M, G
                              suffixes; zeros, taking no space) as object
                              vm/disk, for vmm run --disk FILE
  put FILE NAME [SRC|-]       store the contents of SRC (default: standard input)
                              as object NAME, replacing any object of that name;
                              SRC may be a pipe or a device, read to its end
  get FILE NAME [DST|-]       write object NAME to DST (default: standard output)
  ls FILE [PREFIX]            list objects (whose names start with PREFIX): name,
                              size, and bytes shared with other objects (clones)
  rm FILE NAME...             delete objects
  mv FILE OLD NEW             rename object OLD to NEW (NEW must not exist)
  clone FILE SRC DST          make DST a copy-on-write copy of SRC, instantly,
                              whatever its size; DST must not exist
  fsck FILE                   check every checksum and refcount; exit status 0
                              when clean, 1 with a list of problems
  du FILE                     space: file size, used, shared, free
  help                        this text

A guest's persistent file system (its /data, on a disk given to vmm run
--disk) is reached with FILE:/data/PATH, while the VM is stopped; FILE is
the raw disk image or the store file whose object vm/disk is the disk
(vmm store create --disk-size). A disk a running VM uses is refused; put
on a blank disk makes the file system, as the guest's first boot does:
  ls FILE:/data[/DIR]         list a directory: mode, size, mtime, name
  get FILE:/data/PATH [DST|-] write a file's contents to DST
  put FILE:/data/PATH [SRC|-] make or replace a file (and its directories)
  rm FILE:/data/PATH...       remove files and empty directories

FILE must be a regular file or a block device (create makes only regular
files); anything else, a named pipe for one, is refused before it is
opened. When one of FILE's two superblocks is unreadable, every command
says so on standard error and which commit it uses: if it held the newest
commit, the previous one is shown (and the next change commits on top of
that one).

get never destroys a file it was not asked to write, nor the store: a DST
that is FILE itself (through any symbolic or hard link), or a directory,
is refused before anything is written. A regular DST is written to a
temporary file next to it and renamed over it once complete (keeping its
permissions), so it is never half written and Ctrl-C leaves it as it was.
A DST that exists and is not a regular file (a device such as /dev/null,
a named pipe, a terminal) is written in place, as cp does: it is never
replaced or removed, and opening a named pipe waits for its reader. A put
whose SRC (or standard input) is FILE itself is refused.

Only one process may change a store at a time; another gets
"store is locked by pid N". Puts and gets that take more than a second
show progress on standard error when it is a terminal.
`

type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{2, fmt.Sprintf(format, args...) + "\n(run \"store help\" for usage)"}
}

// Main runs the command in args (args[0] is the command name, not the
// program name) and returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "store: internal error: %v\n", r)
			code = 1
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	c := &cmd{name: args[0], stdin: stdin, stdout: stdout, stderr: stderr}
	err := c.run(args[0], args[1:])
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(stderr, "store %s: %s\n", args[0], ee.msg)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "store %s: %v\n", args[0], err)
	return 1
}

type cmd struct {
	name           string // the command: "ls", "get", ...
	stdin          io.Reader
	stdout, stderr io.Writer
}

func nargs(args []string, min, max int, what string) error {
	if len(args) < min || (max >= 0 && len(args) > max) {
		return usageErr("usage: vmm store %s", what)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") && a != "-" {
			return usageErr("unknown flag %s; usage: vmm store %s", a, what)
		}
	}
	return nil
}

func (c *cmd) run(name string, args []string) error {
	if len(args) > 0 {
		if file, p, ok := splitData(args[0]); ok {
			return c.runData(name, file, p, args[1:])
		}
	}
	switch name {
	case "create":
		var diskSize int64
		for i := 0; i < len(args); i++ {
			v, ok := strings.CutPrefix(args[i], "--disk-size=")
			if !ok && args[i] == "--disk-size" && i+1 < len(args) {
				v, ok = args[i+1], true
				args = append(args[:i:i], args[i+1:]...)
			}
			if ok {
				n, err := parseDiskSize(v)
				if err != nil {
					return usageErr("--disk-size %q: %v", v, err)
				}
				diskSize = n
				args = append(args[:i:i], args[i+1:]...)
				i--
			}
		}
		if err := nargs(args, 1, 1, "create FILE [--disk-size SIZE]"); err != nil {
			return err
		}
		if diskSize > 0 {
			return vmm.CreateStoreDisk(args[0], diskSize)
		}
		return c.create(args[0])
	case "put":
		if err := nargs(args, 2, 3, "put FILE NAME [SRC|-]"); err != nil {
			return err
		}
		src := "-"
		if len(args) == 3 {
			src = args[2]
		}
		return c.put(args[0], args[1], src)
	case "get":
		if err := nargs(args, 2, 3, "get FILE NAME [DST|-]"); err != nil {
			return err
		}
		dst := "-"
		if len(args) == 3 {
			dst = args[2]
		}
		return c.get(args[0], args[1], dst)
	case "ls":
		if err := nargs(args, 1, 2, "ls FILE [PREFIX]"); err != nil {
			return err
		}
		prefix := ""
		if len(args) == 2 {
			prefix = args[1]
		}
		return c.ls(args[0], prefix)
	case "rm":
		if err := nargs(args, 2, -1, "rm FILE NAME..."); err != nil {
			return err
		}
		return c.update(args[0], func(tx *objstore.Tx) error {
			for _, n := range args[1:] {
				if err := tx.Delete(n); err != nil {
					return err
				}
			}
			return nil
		})
	case "mv":
		if err := nargs(args, 3, 3, "mv FILE OLD NEW"); err != nil {
			return err
		}
		return c.update(args[0], func(tx *objstore.Tx) error { return tx.Rename(args[1], args[2]) })
	case "clone":
		if err := nargs(args, 3, 3, "clone FILE SRC DST"); err != nil {
			return err
		}
		return c.update(args[0], func(tx *objstore.Tx) error { return tx.Clone(args[1], args[2]) })
	case "fsck":
		if err := nargs(args, 1, 1, "fsck FILE"); err != nil {
			return err
		}
		return c.fsck(args[0])
	case "du":
		if err := nargs(args, 1, 1, "du FILE"); err != nil {
			return err
		}
		return c.du(args[0])
	}
	return usageErr("unknown command %q", name)
}

// runData runs a command on a guest's persistent file system
// (FILE:/data/PATH; data.go).
func (c *cmd) runData(name, file, p string, args []string) error {
	arg := "-"
	switch name {
	case "ls":
		if len(args) != 0 {
			return usageErr("usage: vmm store ls FILE:/data[/DIR]")
		}
		return c.dataLs(file, p)
	case "get", "put":
		if len(args) > 1 {
			return usageErr("usage: vmm store %s FILE:/data/PATH [%s|-]", name, map[string]string{"get": "DST", "put": "SRC"}[name])
		}
		if len(args) == 1 {
			arg = args[0]
		}
		if name == "get" {
			return c.dataGet(file, p, arg)
		}
		return c.dataPut(file, p, arg)
	case "rm":
		paths := []string{p}
		for _, a := range args {
			f, q, ok := splitData(a)
			if !ok || f != file {
				return usageErr("usage: vmm store rm FILE:/data/PATH...")
			}
			paths = append(paths, q)
		}
		return c.dataRm(file, paths)
	}
	return usageErr("%s does not take FILE:/data (ls, get, put and rm do)", name)
}

// open opens the store, warning on stderr when Open fell back from an
// invalid superblock.
func (c *cmd) open(path string, write bool) (*objstore.Store, *filedev.File, error) {
	dev, err := filedev.Open(path, filedev.Options{ReadOnly: !write})
	if err != nil {
		return nil, nil, err
	}
	s, err := objstore.Open(dev)
	if err != nil {
		dev.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if fb := s.Fallback(); fb != nil {
		msg := fb.String()
		if write {
			msg += fmt.Sprintf("; this command commits on top of transaction %d, overwriting superblock %d", fb.Using, fb.Slot)
		}
		fmt.Fprintf(c.stderr, "store %s: warning: %s: %s (run vmm store fsck)\n", c.name, path, msg)
	}
	return s, dev, nil
}

func (c *cmd) create(path string) error {
	dev, err := filedev.Open(path, filedev.Options{Create: true})
	if err != nil {
		return err
	}
	defer dev.Close()
	_, err = objstore.Create(dev)
	return err
}

func (c *cmd) update(path string, fn func(tx *objstore.Tx) error) error {
	s, dev, err := c.open(path, true)
	if err != nil {
		return err
	}
	defer dev.Close()
	return s.Update(fn)
}

func (c *cmd) view(path string, fn func(tx *objstore.Tx) error) error {
	s, dev, err := c.open(path, false)
	if err != nil {
		return err
	}
	defer dev.Close()
	return s.View(fn)
}

const chunk = 4 << 20

func (c *cmd) put(path, name, src string) error {
	var in io.Reader = c.stdin
	total := int64(-1)
	var inFile *os.File // what is read, to compare with the store
	if src != "-" {
		// Like cp, a named pipe is read: opening it waits for a writer.
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", src)
		}
		if st.Mode().IsRegular() {
			total = st.Size()
		}
		in, inFile = f, f
	} else if f, ok := c.stdin.(*os.File); ok {
		inFile = f
	}
	if in == nil {
		return errors.New("no standard input")
	}
	s, dev, err := c.open(path, true)
	if err != nil {
		return err
	}
	defer dev.Close()
	// Reading the store into itself would read what it writes.
	if inFile != nil && sameFile(inFile, dev) {
		what := src
		if src == "-" {
			what = "standard input"
		}
		return fmt.Errorf("%s is the store %s itself: refusing to put a store into itself", what, path)
	}
	return s.Update(func(tx *objstore.Tx) error {
		if _, err := tx.Stat(name); err == nil {
			if err := tx.Delete(name); err != nil {
				return err
			}
		}
		o, err := tx.Create(name)
		if err != nil {
			return err
		}
		p := newProgress(c.stderr, "put "+name, total)
		buf := make([]byte, chunk)
		var off int64
		for {
			n, rerr := io.ReadFull(in, buf)
			if n > 0 {
				if _, err := o.WriteAt(buf[:n], off); err != nil {
					return err
				}
				off += int64(n)
				p.update(off)
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("reading %s: %w", src, rerr)
			}
		}
		p.done(off)
		return nil
	})
}

// sameFile reports whether f is the store's file (or device).
func sameFile(f *os.File, dev *filedev.File) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := dev.Stat()
	return err == nil && outfile.SameFile(a, b)
}

// testHookChunk, when set, runs after each chunk get writes to a file.
var testHookChunk func(ctx context.Context)

func (c *cmd) get(path, name, dst string) error {
	s, dev, err := c.open(path, false)
	if err != nil {
		return err
	}
	defer dev.Close()
	return s.View(func(tx *objstore.Tx) error {
		o, err := tx.Open(name)
		if err != nil {
			return err
		}
		// Nothing is written before these checks.
		var out io.Writer = c.stdout
		what := dst
		ctx := context.Background()
		if dst == "-" {
			what = "standard output"
			if f, ok := c.stdout.(*os.File); ok && sameFile(f, dev) {
				return fmt.Errorf("standard output is the store %s itself: refusing to write over it", path)
			}
		} else {
			f, err := outfile.Create(dst, outfile.Options{Inputs: []string{path}, InPlace: true})
			if err != nil {
				return err
			}
			defer f.Abort() // removes the temporary file unless committed
			if !f.InPlace() {
				// Ctrl-C stops the copy and removes the temporary file.
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				context.AfterFunc(ctx, stop)
				defer stop()
			}
			out = f
		}
		p := newProgress(c.stderr, "get "+name, o.Size())
		buf := make([]byte, chunk)
		for off := int64(0); off < o.Size(); {
			n, err := o.ReadAt(buf, off)
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					var pe *os.PathError
					if errors.As(werr, &pe) {
						werr = pe.Err
					}
					return fmt.Errorf("writing %s: %w", what, werr)
				}
				off += int64(n)
				p.update(off)
			}
			if err != nil && err != io.EOF {
				return err
			}
			if n == 0 {
				break
			}
			if testHookChunk != nil && dst != "-" {
				testHookChunk(ctx)
			}
			if ctx.Err() != nil {
				return &exitError{130, "interrupted; " + dst + " not written"}
			}
		}
		p.done(o.Size())
		if f, ok := out.(*outfile.File); ok {
			return f.Commit()
		}
		return nil
	})
}

func (c *cmd) ls(path, prefix string) error {
	return c.view(path, func(tx *objstore.Tx) error {
		tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSIZE\tSHARED")
		var infos []objstore.ObjectInfo
		if err := tx.List(prefix, func(oi objstore.ObjectInfo) error { infos = append(infos, oi); return nil }); err != nil {
			return err
		}
		for _, oi := range infos {
			shared, err := tx.SharedBytes(oi.Name)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\n", oi.Name, oi.Size, shared)
		}
		return tw.Flush()
	})
}

func (c *cmd) du(path string) error {
	return c.view(path, func(tx *objstore.Tx) error {
		u, err := tx.Usage()
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "file size  %12d  %s\n", u.DeviceBytes, human(u.DeviceBytes))
		fmt.Fprintf(c.stdout, "used       %12d  %s\n", u.UsedBytes, human(u.UsedBytes))
		fmt.Fprintf(c.stdout, "shared     %12d  %s\n", u.SharedBytes, human(u.SharedBytes))
		fmt.Fprintf(c.stdout, "free       %12d  %s\n", u.FreeBytes, human(u.FreeBytes))
		fmt.Fprintf(c.stdout, "objects    %12d\n", u.Objects)
		return nil
	})
}

func (c *cmd) fsck(path string) error {
	dev, err := filedev.Open(path, filedev.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer dev.Close()
	r := objstore.Fsck(dev)
	fmt.Fprint(c.stdout, r.String())
	if !r.OK() {
		return &exitError{1, ""}
	}
	return nil
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progress draws a progress line on a terminal once an operation has run
// for more than a second.
type progress struct {
	w           io.Writer
	on          bool
	label       string
	total       int64
	start, last time.Time
	shown       bool
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newProgress(w io.Writer, label string, total int64) *progress {
	return &progress{w: w, on: isTerminal(w), label: label, total: total, start: time.Now()}
}

func (p *progress) update(done int64) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.start) < time.Second || now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	p.draw(done, now)
}

func (p *progress) draw(done int64, now time.Time) {
	rate := float64(done) / now.Sub(p.start).Seconds()
	if p.total > 0 {
		const width = 30
		fill := int(int64(width) * done / p.total)
		fill = min(max(fill, 0), width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %s / %s %3d%% %s/s ", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			human(done), human(p.total), done*100/p.total, human(int64(rate)))
	} else {
		fmt.Fprintf(p.w, "\r%s %s %s/s ", p.label, human(done), human(int64(rate)))
	}
	p.shown = true
}

func (p *progress) done(n int64) {
	if p.shown {
		p.draw(n, time.Now())
		fmt.Fprintln(p.w)
	}
}

// parseDiskSize reads a disk size: bytes, or with a K, M, G or T suffix
// (powers of 1024); a positive whole number of 512-byte sectors.
func parseDiskSize(v string) (int64, error) {
	mult := int64(1)
	if n := len(v); n > 0 {
		if i := strings.IndexByte("KMGT", v[n-1]&^0x20); i >= 0 {
			mult, v = int64(1)<<(10*(i+1)), v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, errors.New("want a positive size such as 1G")
	}
	if n*mult%512 != 0 {
		return 0, errors.New("not a whole number of 512-byte sectors")
	}
	return n * mult, nil
}
