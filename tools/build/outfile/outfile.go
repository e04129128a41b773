// Package outfile writes a command's output file so that the command
// never destroys a file the user did not name as its output, nor a device
// node, nor one of its own inputs, and never leaves a half-written file:
//
//   - An output that is the same file as an input (through any symbolic
//     or hard link; for a device, the same device) is refused before
//     anything is written.
//   - A directory is refused.
//   - An existing file that is not a regular file (a character or block
//     device such as /dev/null, a named pipe, a terminal, a socket) is
//     never replaced or removed: it is either refused or, with InPlace,
//     opened and written in place as cp does.
//   - Otherwise the data goes to a new, uniquely named temporary file in
//     the target's directory, renamed over the target by Commit; Abort
//     (or a failed Commit) removes the temporary file and leaves the
//     target as it was. Two writers of the same output each write their
//     own temporary file: the result is one of them, whole.
//   - A symbolic link is followed: its target is replaced, the link kept.
package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Options say what an output may replace.
type Options struct {
	// Inputs are the files the command reads: an output that is one of
	// them is refused.
	Inputs []string
	// InPlace writes an existing file that is not a regular file (a
	// device, a named pipe, a terminal) in place, without truncating or
	// replacing it, as cp does; opening a named pipe waits for a reader.
	// Without it such an output is refused.
	InPlace bool
	// Replace, when set, is asked before an existing regular file is
	// replaced (path is the file's, symbolic links resolved); an error
	// refuses.
	Replace func(path string, st fs.FileInfo) error
}

// File is an output being written.
type File struct {
	path   string // as the user named it
	target string // path with symbolic links resolved
	tmp    string // the temporary file Commit renames; "" when writing in place
	f      *os.File
	done   bool
}

// Create checks path against o and opens the file to write: a new
// temporary file next to it, or, for a device or pipe with o.InPlace,
// the file itself. Nothing existing is modified until Commit.
func Create(path string, o Options) (*File, error) {
	if path == "" {
		return nil, errors.New("no output file named")
	}
	target := path
	if lst, err := os.Lstat(path); err == nil && lst.Mode()&fs.ModeSymlink != 0 {
		t, err := filepath.EvalSymlinks(path)
		if err != nil {
			return nil, fmt.Errorf("%s is a symbolic link to a file that cannot be reached: %w", path, unwrapPath(err))
		}
		target = t
	}
	st, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st = nil
	case err != nil:
		return nil, err
	case st.IsDir():
		return nil, fmt.Errorf("%s is a directory", path)
	default:
		if err := checkInputs(path, st, o.Inputs); err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			if !o.InPlace {
				return nil, fmt.Errorf("%s is %s, not a regular file: refusing to replace it", path, Describe(st.Mode()))
			}
			return openInPlace(path, target, st, o)
		}
		if o.Replace != nil {
			if err := o.Replace(target, st); err != nil {
				return nil, err
			}
		}
	}
	f, err := createTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", path, err)
	}
	if st != nil {
		// Keep the permissions of the file replaced, as cp does.
		if err := f.Chmod(st.Mode().Perm()); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("cannot write %s: %w", path, err)
		}
	}
	return &File{path: path, target: target, tmp: f.Name(), f: f}, nil
}

func openInPlace(path, target string, st fs.FileInfo, o Options) (*File, error) {
	f, err := os.OpenFile(target, os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	// The file opened must be the one checked: had the path been replaced
	// by a regular file meanwhile, writing it in place would leave a mix
	// of old and new bytes.
	fst, err := f.Stat()
	if err == nil && (fst.Mode().IsRegular() || fst.Mode().Type() != st.Mode().Type()) {
		err = fmt.Errorf("%s changed while it was opened", path)
	}
	if err == nil {
		err = checkInputs(path, fst, o.Inputs)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &File{path: path, target: target, f: f}, nil
}

func checkInputs(path string, st fs.FileInfo, inputs []string) error {
	for _, in := range inputs {
		if ist, err := os.Stat(in); err == nil && SameFile(st, ist) {
			if in == path {
				return fmt.Errorf("%s is both an input and the output: refusing to write over it", path)
			}
			return fmt.Errorf("%s is the same file as the input %s: refusing to write over it", path, in)
		}
	}
	return nil
}

// createTemp is os.CreateTemp with the permissions a new file gets
// (0666 less the umask) rather than 0600.
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) && try < 10000 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot create a file in %s: %w", dir, unwrapPath(err))
		}
		return f, nil
	}
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Name is the file to write: the temporary file, or the output itself
// when it is written in place.
func (f *File) Name() string {
	if f.tmp != "" {
		return f.tmp
	}
	return f.target
}

// InPlace reports whether the output is written in place (a device or a
// pipe) rather than through a temporary file.
func (f *File) InPlace() bool { return f.tmp == "" }

// Write writes to the file.
func (f *File) Write(p []byte) (int, error) { return f.f.Write(p) }

// Close closes the file without committing it, for a caller that lets
// another program write the temporary file (Name) before Commit.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// Commit makes the output final: it flushes the temporary file to disk
// and renames it over the target (or closes the device written in place).
// On error the temporary file is removed and the target left as it was.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: output already committed or aborted", f.path)
	}
	f.done = true
	if f.tmp == "" {
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		return nil
	}
	var err error
	if f.f != nil {
		err = errors.Join(f.f.Sync(), f.Close())
	}
	if err == nil {
		// The check at Create, again: a directory or device that took the
		// target's place meanwhile is not replaced.
		if st, serr := os.Lstat(f.target); serr == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("%s became %s while it was written: refusing to replace it", f.path, Describe(st.Mode()))
		}
	}
	if err == nil {
		err = os.Rename(f.tmp, f.target)
	}
	if err != nil {
		os.Remove(f.tmp)
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	return nil
}

// Abort drops the output: the temporary file is removed, the target left
// as it was. It does nothing after Commit, so it can be deferred.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	if f.tmp != "" {
		os.Remove(f.tmp)
	}
}

// SameFile reports whether a and b are the same file: the same inode, or
// the same device through two device nodes.
func SameFile(a, b fs.FileInfo) bool {
	if os.SameFile(a, b) {
		return true
	}
	am, bm := a.Mode(), b.Mode()
	if am&fs.ModeDevice == 0 || bm&fs.ModeDevice == 0 || am&fs.ModeCharDevice != bm&fs.ModeCharDevice {
		return false
	}
	as, ok1 := a.Sys().(*syscall.Stat_t)
	bs, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && as.Rdev == bs.Rdev
}

// IsNullDevice reports whether path is (or leads to) the null device.
func IsNullDevice(path string) bool {
	st, err := os.Stat(path)
	if err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err == nil && SameFile(st, null)
}

// Describe names the kind of file a mode is: "a directory", "a named pipe
// (FIFO)", "a character device", ...
func Describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	}
	return "a " + m.Type().String() + " file"
}
