// Package build turns a Go main package into a bootable Amber image: it
// runs the stock Go toolchain with an overlay that links the kernel into
// the program and turns the runtime's SYSCALL instructions into calls of
// the kernel, then checks and annotates the linked executable.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	amber "github.com/amberos/amber"
	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/tools/build/elfpatch"
	"github.com/amberos/amber/tools/build/outfile"
)

// TextAddress is where the image's text starts; the ELF header page is
// mapped just below it, at boot.ImageBase.
const TextAddress = boot.TextBase

// Options says what to build.
type Options struct {
	// Package is the main package: an import path, or a directory on disk
	// (which may belong to another module).
	Package string
	// Output is the image path. It must not be a directory, a device or
	// a named pipe, nor an existing file other than an image (an ELF
	// file) or an empty file; /dev/null builds and checks the image and
	// discards it. The image is written to a temporary file in the same
	// directory and renamed into place when complete, so the output is
	// never half written and concurrent builds of one output do not mix.
	Output string
	// Dir is the directory Package is resolved from; "" means the
	// current directory.
	Dir string
	// Log receives warnings and the go command's output; nil discards it.
	Log io.Writer
	// Files, when set, is a directory packed into the image as a cpio
	// "newc" archive and unpacked into the guest's root file system
	// before main runs (or, with Test, before the tests run).
	Files string
	// FilesAt is the absolute guest directory Files is unpacked into
	// ("" means the root); when set, the program also starts in it (its
	// working directory), as a test binary expects its package directory.
	FilesAt string
	// WorkDir, when set, is the program's working directory in the guest
	// instead of FilesAt (an absolute guest path inside it).
	WorkDir string
	// FilesSkip lists host directories under Files that are not packed.
	FilesSkip []string
	// ExtraFiles adds single host files to the packed files, by absolute
	// guest path (only with Files).
	ExtraFiles map[string]string
	// Test builds the test binary of Package (`go test -c`), which need
	// not be a main package: a standard-library package's own tests can
	// run in the guest.
	Test bool
}

// Result describes a built image.
type Result struct {
	Output      string
	GoVersion   string
	Sites       int             // SYSCALL sites rewritten by the overlay
	StraySites  []elfpatch.Site // SYSCALLs outside GOROOT that trap instead
	ExternalMod bool            // built through a generated go.work
}

type pkgInfo struct {
	Name       string
	Dir        string
	Module     *struct{ Path, Version, Dir string }
	Error      *struct{ Err string }
	ImportPath string
	Deps       []string
}

// Build builds an image.
func Build(ctx context.Context, o Options) (*Result, error) {
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	if o.Output == "" {
		return nil, errors.New("build: no output path")
	}
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	// The go command runs in the package's directory: make the output
	// path independent of that.
	o.Output = resolve(dir, o.Output)
	img, err := createOutput(o)
	if err != nil {
		return nil, err
	}
	defer img.abort()
	pattern := o.Package
	if pattern == "" {
		pattern = "."
	}
	filesDir := ""
	if o.Files != "" {
		filesDir = resolve(dir, o.Files)
	}
	// A directory on disk is built from inside it, so its own module
	// (and not the caller's) resolves it.
	versioned := false
	if st, err := os.Stat(resolve(dir, pattern)); err == nil && st.IsDir() {
		dir, pattern = resolve(dir, pattern), "."
	} else if strings.Contains(pattern, "@") {
		versioned = true
	}
	env := append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=")

	// One go command for the values: each start costs ~10 ms.
	goEnv, err := goOutput(ctx, dir, env, "env", "GOROOT", "GOVERSION", "GOMODCACHE", "GOMOD")
	if err != nil {
		return nil, err
	}
	vals := strings.Split(goEnv, "\n")
	if len(vals) == 3 {
		vals = append(vals, "") // outside a module GOMOD is empty (trimmed away)
	}
	if len(vals) != 4 {
		return nil, fmt.Errorf("go env printed %q, want GOROOT, GOVERSION, GOMODCACHE and GOMOD", goEnv)
	}
	goroot, goVersion, modCache, gomod := vals[0], vals[1], vals[2], vals[3]
	if (gomod == "" || gomod == os.DevNull) && !versioned {
		return nil, fmt.Errorf("%s is not inside a Go module (no go.mod found): `vmm build` builds main packages of modules (or IMPORT/PATH@VERSION, as go install does)", dir)
	}
	cache, err := cacheDir()
	if err != nil {
		return nil, err
	}
	res := &Result{Output: o.Output, GoVersion: goVersion}

	// The modules of the build: the main package's, and the kernel's
	// source when that is another module. More than one makes a
	// generated workspace (go.work).
	var uses []string
	workSum := ""
	kernelSrc := func(modPath string) error {
		if modPath == amber.ModulePath {
			return nil
		}
		src, err := extractGuestSource(cache)
		if err != nil {
			return err
		}
		uses = append(uses, src)
		return nil
	}
	if versioned {
		// As go install does: the module at that version is the main
		// module, whatever the current directory's module is. A main
		// package cannot be imported, and files cannot be added to the
		// module cache, so the build uses a copy of the module.
		m, err := resolveVersion(ctx, cache, env, pattern)
		if err != nil {
			return nil, err
		}
		cp, err := copyModule(cache, m.Path, m.Version, m.Dir)
		if err != nil {
			return nil, err
		}
		uses = append(uses, cp)
		if err := kernelSrc(m.Path); err != nil {
			return nil, err
		}
		dir, pattern, workSum = cp, m.ImportPath, m.GoSum
	} else {
		modDir := filepath.Dir(gomod)
		uses = append(uses, modDir)
		modPath, _ := modulePath(gomod)
		if err := kernelSrc(modPath); err != nil {
			return nil, err
		}
	}
	setWork := func() error {
		if len(uses) < 2 {
			return nil
		}
		work := filepath.Join(cache, "work", hashOf(uses...))
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
		workFile := filepath.Join(work, "go.work")
		content, err := workspace(goVersion, uses...)
		if err != nil {
			return err
		}
		if err := writeIfChanged(workFile, []byte(content)); err != nil {
			return err
		}
		if workSum != "" {
			if err := writeIfChanged(filepath.Join(work, "go.work.sum"), []byte(workSum)); err != nil {
				return err
			}
		}
		env = append(env, "GOWORK="+workFile)
		res.ExternalMod = true
		return nil
	}
	if err := setWork(); err != nil {
		return nil, err
	}

	pkg, err := listPackage(ctx, dir, env, pattern, o.Package)
	if err != nil {
		return nil, err
	}
	if pkg.Module != nil && modCache != "" && within(pkg.Module.Dir, modCache) {
		// A package in the module cache (a dependency): the go command
		// refuses overlays there, so its module is replaced by a copy
		// outside the cache, as a module of the workspace.
		cp, err := copyModule(cache, pkg.Module.Path, pkg.Module.Version, pkg.Module.Dir)
		if err != nil {
			return nil, err
		}
		if i := slices.Index(uses, pkg.Module.Dir); i >= 0 {
			uses[i] = cp // a directory in the cache named on the command line
		} else {
			uses = append(uses, cp)
		}
		if dir == pkg.Module.Dir || within(dir, pkg.Module.Dir) {
			rel, _ := filepath.Rel(pkg.Module.Dir, dir)
			dir = filepath.Join(cp, rel)
		}
		if err := setWork(); err != nil {
			return nil, err
		}
		if pattern != "." {
			pattern = pkg.ImportPath
		}
		if pkg, err = listPackage(ctx, dir, env, pattern, o.Package); err != nil {
			return nil, err
		}
		if within(pkg.Dir, modCache) {
			return nil, fmt.Errorf("%s: the copy of module %s outside the module cache was not used (package directory %s)", o.Package, pkg.Module.Path, pkg.Dir)
		}
	}
	if pkg.Name != "main" && !o.Test {
		return nil, fmt.Errorf("%s is package %s, not a main package (a command)", o.Package, pkg.Name)
	}

	ovDir := filepath.Join(cache, "overlay", hashOf(goroot, goVersion))
	replace, err := writeOverlay(goroot, goVersion, ovDir)
	if err != nil {
		return nil, err
	}
	res.Sites = expectedSites[releaseOf(goVersion)]
	// The kernel is linked in through a file importing it: into the main
	// package, or for a test binary into the package's external tests.
	genPkg, genSuffix := "main", ".go"
	if o.Test {
		genPkg, genSuffix = pkg.Name+"_test", "_test.go"
	}
	// A program also gets the time zone database (time/tzdata, ~450 KB):
	// the guest has no /usr/share/zoneinfo, and with it time.LoadLocation
	// and TZ work. A test binary finds $GOROOT/lib/time/zoneinfo.zip,
	// which vmm test packs (the time package's tests expect no embedded
	// copy).
	// time itself is imported too: tzdata registers itself with it by a
	// linkname, which does not link without it (a program that imports
	// neither os nor time failed with "relocation target
	// time.registerLoadFromEmbeddedTZData not defined").
	// And the persistent file system's service (kernel/datafs/mount),
	// which mounts /data before main when the VM has a disk and does
	// nothing otherwise.
	mount := "\t_ \"" + amber.ModulePath + "/kernel/datafs/mount\"\n"
	imports := "import (\n\t_ \"" + boot.KernelPkgPath + "\"\n" + mount + ")\n"
	if !o.Test {
		imports = "import (\n\t_ \"" + boot.KernelPkgPath + "\"\n" + mount + "\t_ \"time\"\n\t_ \"time/tzdata\"\n)\n"
	}
	// A program that uses net gets the network service (AF_INET and
	// AF_INET6 sockets on gVisor's stack, ~4 MB); others stay small.
	usesNet := pkg.ImportPath == "net" || slices.Contains(pkg.Deps, "net")
	if o.Test && !usesNet {
		// The tests' own imports count too (httptest in encoding/json's).
		deps, err := goOutput(ctx, dir, env, "list", "-e", "-deps", "-test", "-f", "{{.ImportPath}}", pattern)
		if err != nil {
			return nil, err
		}
		usesNet = slices.Contains(strings.Fields(deps), "net")
	}
	if usesNet {
		imports += "import _ \"" + boot.KernelPkgPath + "/netsvc\"\n"
	}
	// Named after its content: builds by different versions of vmm that
	// share the cache never see each other's file.
	importSrc := "// Code generated by vmm build. DO NOT EDIT.\n\npackage " + genPkg + "\n\n" + imports
	importFile := filepath.Join(ovDir, "zz_amber_kernel_"+hashOf(importSrc)+genSuffix)
	if err := writeIfChanged(importFile, []byte(importSrc)); err != nil {
		return nil, err
	}
	replace[filepath.Join(pkg.Dir, "zz_amber_kernel"+genSuffix)] = importFile
	if o.Files != "" {
		// The archive replaces the kernel's packed.go, so the kernel
		// unpacks it at boot, before any package init runs.
		kdir, err := goOutput(ctx, dir, env, "list", "-f", "{{.Dir}}", boot.KernelPkgPath)
		if err != nil {
			return nil, err
		}
		src, err := filesSource(filesDir, o.FilesAt, o.WorkDir, o.FilesSkip, o.ExtraFiles)
		if err != nil {
			return nil, err
		}
		filesFile := filepath.Join(cache, "files", hashOf(src)+".go")
		if err := os.MkdirAll(filepath.Dir(filesFile), 0o755); err != nil {
			return nil, err
		}
		if err := writeIfChanged(filesFile, []byte(src)); err != nil {
			return nil, err
		}
		replace[filepath.Join(kdir, "packed.go")] = filesFile
	}
	ovJSON, _ := json.MarshalIndent(map[string]any{"Replace": replace}, "", "\t")
	ovFile := filepath.Join(cache, "overlay", hashOf(string(ovJSON))+".json")
	if err := writeIfChanged(ovFile, ovJSON); err != nil {
		return nil, err
	}

	tmp := img.name()
	ldflags := fmt.Sprintf("-E %s -T %#x", boot.KernelEntrySym, TextAddress)
	goCmd := []string{"build"}
	if o.Test {
		goCmd = []string{"test", "-c"}
	}
	cmd := exec.CommandContext(ctx, "go", append(goCmd, "-overlay", ovFile, "-ldflags", ldflags, "-o", tmp, pattern)...)
	cmd.Dir, cmd.Env = dir, env
	// Cancelled (Ctrl-C), the go command is interrupted, so it cleans up
	// after itself, and killed if it has not stopped 10 s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = log, io.MultiWriter(log, &stderr)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("go build %s failed: %v\n%s", o.Package, err, strings.TrimSpace(stderr.String()))
	}
	if err := postLink(tmp, goVersion, res, log); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := img.commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// listPackage runs go list on pattern and returns the one package it
// names.
func listPackage(ctx context.Context, dir string, env []string, pattern, name string) (*pkgInfo, error) {
	out, err := goOutput(ctx, dir, env, "list", "-e", "-json=Name,Dir,ImportPath,Module,Error,Deps", pattern)
	if err != nil {
		return nil, err
	}
	var pkg pkgInfo
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&pkg); err != nil {
		return nil, fmt.Errorf("go list %s: %v", pattern, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s matches several packages; name one main package", name)
	}
	if pkg.Error != nil {
		return nil, fmt.Errorf("%s: %s", name, pkg.Error.Err)
	}
	return &pkg, nil
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// versionedModule is the module holding IMPORT/PATH@VERSION's package.
type versionedModule struct {
	ImportPath, Path, Version, Dir string
	GoSum                          string // the checksums the build needs
}

// resolveVersion finds the module of IMPORT/PATH@VERSION (any version
// query go get accepts) and downloads it into the module cache, through
// a scratch module that requires it (the go command alone knows which
// prefix of the path is the module). The scratch module's go.sum holds
// the checksums of what the package needs.
func resolveVersion(ctx context.Context, cache string, env []string, arg string) (*versionedModule, error) {
	path, query, _ := strings.Cut(arg, "@")
	if path == "" || query == "" || strings.Contains(query, "@") || strings.HasPrefix(path, ".") || filepath.IsAbs(path) {
		return nil, fmt.Errorf("%s: want IMPORT/PATH@VERSION (as go install takes), a directory or an import path", arg)
	}
	scratch := filepath.Join(cache, "resolve", hashOf(arg))
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(scratch, "go.mod"), []byte("module amber.invalid/resolve\n\ngo 1.26\n"), 0o644); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(scratch, "go.sum"))
	env = append(slices.Clip(env), "GOFLAGS=-mod=mod", "GOWORK=off")
	if _, err := goOutput(ctx, scratch, env, "get", arg); err != nil {
		return nil, fmt.Errorf("resolving %s: %w", arg, err)
	}
	out, err := goOutput(ctx, scratch, env, "list", "-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}", path)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", arg, err)
	}
	f := strings.Split(out, "\t")
	if len(f) != 4 || f[3] == "" {
		return nil, fmt.Errorf("resolving %s: %s is not in a module", arg, path)
	}
	sum, err := os.ReadFile(filepath.Join(scratch, "go.sum"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &versionedModule{ImportPath: f[0], Path: f[1], Version: f[2], Dir: f[3], GoSum: string(sum)}, nil
}

// copyModule returns a copy of a module of the module cache (immutable
// per version) under the cache, made once per version: its files are
// hard links where the file system allows it. The go command refuses
// overlays in the module cache; in the copy, a file can be added to the
// main package.
func copyModule(cache, modPath, version, src string) (string, error) {
	dst := filepath.Join(cache, "mod", hashOf(modPath, version), filepath.Base(modPath)+"@"+version)
	if _, err := os.Stat(filepath.Join(dst, ".amber-copied")); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "copy-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(tmp, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			if os.Link(p, to) == nil {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, 0o444)
		}
		return nil // the module cache holds only files and directories
	})
	if err != nil {
		return "", fmt.Errorf("copying module %s@%s out of the module cache: %w", modPath, version, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".amber-copied"), []byte(modPath+"@"+version+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(filepath.Join(dst, ".amber-copied")); serr == nil {
			return dst, nil // another build copied it first
		}
		return "", err
	}
	return dst, nil
}

// output is where the linked image goes: a temporary file in the output's
// directory renamed into place once the image is complete, or, for
// /dev/null, a temporary directory removed after the build.
type output struct {
	f       *outfile.File
	discard string
}

// createOutput applies go build's rules to the output: never replace a
// directory, a device or a named pipe, nor a file that is not an image
// (an ELF file) such as a Go source file, nor an input of the build; -o
// /dev/null builds and checks the image but writes nothing.
func createOutput(o Options) (*output, error) {
	if outfile.IsNullDevice(o.Output) {
		d, err := os.MkdirTemp("", "vmm-build-")
		if err != nil {
			return nil, err
		}
		return &output{discard: d}, nil
	}
	if st, err := os.Stat(o.Output); err == nil && !st.Mode().IsRegular() && !st.IsDir() {
		return nil, fmt.Errorf("%s is %s, not a regular file: refusing to replace it (images are written to regular files; -o %s builds and checks the image and discards it)",
			o.Output, outfile.Describe(st.Mode()), os.DevNull)
	}
	if exe, err := os.Executable(); err == nil {
		est, eerr := os.Stat(exe)
		ost, oerr := os.Stat(o.Output)
		if eerr == nil && oerr == nil && outfile.SameFile(est, ost) {
			return nil, fmt.Errorf("%s is the executable running this build (%s): refusing to overwrite it", o.Output, exe)
		}
	}
	var inputs []string
	for _, host := range o.ExtraFiles {
		inputs = append(inputs, host)
	}
	// As go build does, make the output's directory.
	if err := os.MkdirAll(filepath.Dir(o.Output), 0o777); err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", o.Output, err)
	}
	f, err := outfile.Create(o.Output, outfile.Options{Inputs: inputs, Replace: replaceImage})
	if err != nil {
		return nil, err
	}
	// The go command writes the temporary file by its name: it replaces
	// it (an empty file is one go build may overwrite).
	f.Close()
	return &output{f: f}, nil
}

// replaceImage lets an existing image (or an empty file) be replaced, as
// go build replaces only object files.
func replaceImage(path string, st fs.FileInfo) error {
	what := "is not an image (an ELF file)"
	if strings.HasSuffix(path, ".go") {
		what = "is a Go source file"
	}
	if st.Size() == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err == nil && string(magic) == elf.ELFMAG {
		return nil
	}
	return fmt.Errorf("%s already exists and %s: refusing to overwrite it (remove it or choose another -o)", path, what)
}

func (o *output) name() string {
	if o.discard != "" {
		return filepath.Join(o.discard, "image")
	}
	return o.f.Name()
}

func (o *output) commit() error {
	if o.discard != "" {
		return os.RemoveAll(o.discard)
	}
	return o.f.Commit()
}

// abort removes the temporary file; after commit it does nothing.
func (o *output) abort() {
	if o.discard != "" {
		os.RemoveAll(o.discard)
		return
	}
	o.f.Abort()
}

// postLink checks that no system call bypasses the kernel and adds the
// notes the VMM and other loaders read.
func postLink(path, goVersion string, res *Result, log io.Writer) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading the linked image: %w", err)
	}
	sites, err := elfpatch.ScanSyscalls(f, IsKernelSymbol)
	syms, serr := f.Symbols()
	entry := f.Entry
	f.Close()
	if serr != nil {
		return fmt.Errorf("reading the linked image's symbols: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("scanning the image for SYSCALL instructions: %w", err)
	}
	var bad []string
	for _, s := range sites {
		if isStdSymbol(s.Symbol) {
			bad = append(bad, s.String())
		} else {
			res.StraySites = append(res.StraySites, s)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the image still makes %d real system calls from the standard library (the overlay missed them): %s", len(bad), strings.Join(bad, ", "))
	}
	if len(res.StraySites) > 0 {
		fmt.Fprintf(log, "vmm build: warning: %d SYSCALL instruction(s) outside the standard library (e.g. %s) will reach the kernel through the slower trap path\n",
			len(res.StraySites), res.StraySites[0])
	}
	note := boot.AmberNote{ABIVersion: boot.ABIVersion}
	for _, s := range syms {
		switch s.Name {
		case boot.KernelEntrySym + ".abi0":
			note.Entry = s.Value
		case boot.KernelPkgPath + ".lstarEntry.abi0":
			note.LSTAR = s.Value
		}
	}
	if note.Entry == 0 || note.Entry != entry || note.LSTAR == 0 {
		return fmt.Errorf("the linked image lacks the kernel's entry points (entry %#x, kernel.start %#x, kernel.lstarEntry %#x)", entry, note.Entry, note.LSTAR)
	}
	desc, err := binary.Append(nil, binary.LittleEndian, note)
	if err != nil {
		return err
	}
	desc = append(desc, goVersion...)
	// The Xen PVH note: other VMMs (and `vmm run --boot=pvh`) start the
	// image at the kernel's 32-bit entry (boot/pvh.go, kernel/pvh_amd64.s).
	pvh := uint64(0)
	for _, s := range syms {
		if s.Name == boot.PVHEntrySym+".abi0" {
			pvh = s.Value
		}
	}
	if pvh == 0 || pvh > 0xffffffff {
		return fmt.Errorf("the linked image lacks the kernel's 32-bit PVH entry (%s at %#x)", boot.PVHEntrySym, pvh)
	}
	return elfpatch.AddNotes(path, []elfpatch.Note{
		{Name: boot.NoteNameAmber, Type: boot.NoteTypeABI, Desc: desc},
		{Name: boot.NoteNameXen, Type: boot.NoteTypePVH, Desc: binary.LittleEndian.AppendUint32(nil, uint32(pvh))},
	})
}

// IsKernelSymbol reports whether an ELF function symbol belongs to the
// kernel, the one place allowed to hold SYSCALL-related code.
func IsKernelSymbol(sym string) bool {
	return strings.HasPrefix(sym, boot.KernelPkgPath+".")
}

// isStdSymbol reports whether a symbol belongs to the standard library
// (whose first path element has no dot), e.g. runtime.write1.abi0. A
// SYSCALL there means the overlay missed a site; one in the program's own
// or third-party assembly is served by the kernel's trap path.
func isStdSymbol(sym string) bool {
	first := sym
	if i := strings.IndexByte(first, '/'); i >= 0 {
		first = first[:i]
	} else if i := strings.IndexByte(first, '.'); i >= 0 {
		first = first[:i]
	}
	return sym != "" && first != "main" && !strings.Contains(first, ".")
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func goOutput(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", errors.New("the go command is not on PATH: install Go 1.26 (https://go.dev/dl) and try again")
		}
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func modulePath(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`), nil
		}
	}
	return "", fmt.Errorf("%s has no module line", gomod)
}

// goLine returns the go line of a go.mod file ("1.26.8"), or "" if it
// has none.
func goLine(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, "//"); i >= 0 {
			l = l[:i]
		}
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "go" {
			return f[1], nil
		}
	}
	return "", nil
}

// workspace returns a go.work using the module directories dirs. Its go
// line is the newest of the modules' own go lines, as `go work use` would
// write it: the go command refuses a workspace older than one of its
// modules. A module newer than the local toolchain (goVersion) is left to
// the go command, which switches toolchains or says which it needs.
func workspace(goVersion string, dirs ...string) (string, error) {
	line := "1.26" // the kernel's own go line
	for _, d := range dirs {
		v, err := goLine(filepath.Join(d, "go.mod"))
		if err != nil {
			return "", err
		}
		if v == "" {
			continue
		}
		if !version.IsValid("go" + v) {
			return "", fmt.Errorf("%s: invalid go line %q", filepath.Join(d, "go.mod"), v)
		}
		if version.Compare("go"+v, "go"+line) > 0 {
			line = v
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "// Code generated by vmm build (%s). DO NOT EDIT.\n\ngo %s\n\nuse (\n", goVersion, line)
	for _, d := range dirs {
		fmt.Fprintf(&b, "\t%q\n", d)
	}
	b.WriteString(")\n")
	return b.String(), nil
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func cacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	d := filepath.Join(base, "amber")
	return d, os.MkdirAll(d, 0o755)
}

// extractGuestSource writes the kernel's source, embedded in this binary,
// into the cache as a module with no requirements, once per content.
func extractGuestSource(cache string) (string, error) {
	h := sha256.New()
	var files []string
	err := fs.WalkDir(amber.GuestSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") || p == "go.mod" || p == "go.sum" {
			return err
		}
		data, err := amber.GuestSource.ReadFile(p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write(data)
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "src", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(cache, "src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for _, p := range files {
		data, _ := amber.GuestSource.ReadFile(p)
		dst := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return "", err
		}
	}
	gomod, gosum, err := guestModFiles()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.sum"), gosum, 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "go.mod")); serr == nil {
			return dir, nil // another build extracted it first
		}
		return "", err
	}
	return dir, nil
}

// guestModFiles are the go.mod and go.sum of the guest source's module:
// it requires what the guest packages need (amber.GuestRequires) at the
// versions this module's go.mod names.
func guestModFiles() (string, []byte, error) {
	mod, err := amber.GuestSource.ReadFile("go.mod")
	if err != nil {
		return "", nil, err
	}
	sum, err := amber.GuestSource.ReadFile("go.sum")
	if err != nil {
		return "", nil, err
	}
	vers := map[string]string{}
	for _, line := range strings.Split(string(mod), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && slices.Contains(amber.GuestRequires, f[0]) {
			vers[f[0]] = f[1]
		}
	}
	// "go 1.26.0", not "go 1.26": with requirements the go command
	// otherwise wants the file tidied ("updates to go.mod needed").
	out := "module " + amber.ModulePath + "\n\ngo 1.26.0\n\nrequire (\n"
	for i, m := range amber.GuestRequires {
		v, ok := vers[m]
		if !ok {
			return "", nil, fmt.Errorf("go.mod does not require %s, which the guest packages need", m)
		}
		out += "\t" + m + " " + v
		if i > 0 {
			out += " // indirect" // gVisor's, not the guest packages' own
		}
		out += "\n"
	}
	return out + ")\n", sum, nil
}

// filesSource packs dir (less the directories in skip) as a cpio "newc"
// archive and returns a Go file of package kernel that hands it to the
// kernel, with the directory to start in: workDir, or at.
func filesSource(dir, at, workDir string, skip []string, extra map[string]string) (string, error) {
	at = strings.Trim(filepath.ToSlash(filepath.Clean("/"+at)), "/")
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("--files: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("--files: %s is not a directory", dir)
	}
	var buf bytes.Buffer
	w := cpioWriter{&buf}
	ino := uint64(1)
	if at != "" {
		parts := strings.Split(at, "/")
		for i := range parts {
			ino++
			info := cpioInfo{Name: strings.Join(parts[:i+1], "/"), Ino: ino, NLink: 2, Mode: cpioDir | 0o755}
			if err := w.write(info, nil); err != nil {
				return "", err
			}
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() && slices.Contains(skip, p) {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		ino++
		info := cpioInfo{Name: path.Join(at, filepath.ToSlash(rel)), Ino: ino, NLink: 1, MTime: uint64(fi.ModTime().Unix()), Mode: uint64(fi.Mode().Perm())}
		if fi.Mode()&fs.ModeSetuid != 0 {
			info.Mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			info.Mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			info.Mode |= 0o1000
		}
		var data []byte
		switch {
		case fi.IsDir():
			info.Mode |= cpioDir
		case fi.Mode()&fs.ModeSymlink != 0:
			info.Mode |= cpioSymlink
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			data = []byte(t)
		case fi.Mode().IsRegular():
			info.Mode |= cpioRegular
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		default:
			return nil // devices, fifos and sockets are not packed
		}
		return w.write(info, data)
	})
	if err != nil {
		return "", fmt.Errorf("--files: %w", err)
	}
	guests := make([]string, 0, len(extra))
	for g := range extra {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	for _, g := range guests {
		data, err := os.ReadFile(extra[g])
		if err != nil {
			return "", fmt.Errorf("packing %s: %w", extra[g], err)
		}
		parts := strings.Split(strings.Trim(path.Clean("/"+g), "/"), "/")
		for i := 1; i < len(parts); i++ {
			ino++
			info := cpioInfo{Name: strings.Join(parts[:i], "/"), Ino: ino, NLink: 2, Mode: cpioDir | 0o755}
			if err := w.write(info, nil); err != nil {
				return "", err
			}
		}
		ino++
		info := cpioInfo{Name: strings.Join(parts, "/"), Ino: ino, NLink: 1, Mode: cpioRegular | 0o644}
		if err := w.write(info, data); err != nil {
			return "", err
		}
	}
	if err := w.trailer(); err != nil {
		return "", err
	}
	var src strings.Builder
	src.WriteString("// Code generated by vmm build --files. DO NOT EDIT.\n\npackage kernel\n\n")
	src.WriteString("var packedFiles = ")
	quoteBytes(&src, buf.Bytes())
	cwd := "/" + at
	if workDir != "" {
		cwd = path.Clean("/" + filepath.ToSlash(workDir))
	}
	fmt.Fprintf(&src, "\n\nvar packedCwd = %q\n", cwd+"\x00")
	return src.String(), nil
}

// quoteBytes writes b as a Go string literal (one line: a long chain of
// concatenations would cost the compiler more).
func quoteBytes(w *strings.Builder, b []byte) {
	const hexDigits = "0123456789abcdef"
	w.WriteString("\"")
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			w.WriteByte('\\')
			w.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			w.WriteByte(c)
		default:
			w.WriteString("\\x")
			w.WriteByte(hexDigits[c>>4])
			w.WriteByte(hexDigits[c&15])
		}
	}
	w.WriteString("\"")
}
