package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// The Debian packages the nested Linux is made of: the kernel through its
// metapackage (which depends on the current ABI's image) and a static
// busybox for the initramfs's shell and tools.
const (
	kernelMeta = "linux-image-amd64"
	busyboxPkg = "busybox-static"
)

// wantModules are the modules the nested Linux loads, with what they
// depend on: KVM on the emulated AMD CPU and the 9p
// share over virtio-pci. Ones built into the kernel are skipped.
var wantModules = []string{"kvm_amd", "virtio_pci", "9pnet_virtio", "9p"}

// initScript is the nested Linux's /init: the modules, the loopback
// interface (the network tests' host side listens on 127.0.0.1), the
// share, the share's run.sh, and the status line the host reads before the power-off.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
for m in /lib/modules/*.ko; do insmod "$m" || echo "nestkvm: insmod $m failed"; done
if [ ! -c /dev/kvm ]; then echo "nestkvm: no /dev/kvm in the nested Linux"; fi
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 host0 /share; then
	cd /tmp && sh /share/run.sh
	echo "` + statusMarker + `$?"
else
	echo "nestkvm: cannot mount the share"
fi
poweroff -f
`

// statusMarker starts the console line that carries run.sh's exit status.
const statusMarker = "nestkvm-status: "

// Linux is a prepared nested Linux: a kernel and an initramfs, on disk.
type Linux struct {
	Kernel, Initramfs string
	Packages          []string // package=version, as apt resolved them
}

// debPkg is a package pinned to the version apt resolved.
type debPkg struct{ name, version string }

func (p debPkg) String() string { return p.name + "=" + p.version }

// resolve asks apt which kernel image and busybox it would install, so the
// cache is keyed by what is current in the archive.
func resolve(log io.Writer) ([]debPkg, error) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		return nil, errors.New("apt-cache is missing: the nested Linux is made from Debian's " + kernelMeta + " and " + busyboxPkg + " packages, fetched with apt-get download (on Debian or Ubuntu)")
	}
	// Each apt-cache call can take seconds: ask for both at once.
	f, err := aptShow(log, kernelMeta, busyboxPkg)
	if err != nil {
		return nil, err
	}
	image, version := kernelDep(f[kernelMeta]["Depends"])
	if image == "" {
		return nil, fmt.Errorf("apt: %s depends on no linux-image package (Depends: %q)", kernelMeta, f[kernelMeta]["Depends"])
	}
	if version == "" {
		fi, err := aptShow(log, image)
		if err != nil {
			return nil, err
		}
		version = fi[image]["Version"]
	}
	return []debPkg{{image, version}, {busyboxPkg, f[busyboxPkg]["Version"]}}, nil
}

// kernelDep returns the kernel image a Depends field names, with its
// version when the field pins it exactly (Debian's metapackage does).
func kernelDep(depends string) (image, version string) {
	for _, d := range strings.Split(depends, ",") {
		name, rest, _ := strings.Cut(strings.TrimSpace(d), " ")
		if !strings.HasPrefix(name, "linux-image-") {
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(rest), "(= "); ok {
			version = strings.TrimSuffix(v, ")")
		}
		return name, version
	}
	return "", ""
}

// aptShow returns the fields of the candidate versions of pkgs, by
// package; with no package lists yet (a fresh machine), it runs apt-get
// update once.
func aptShow(log io.Writer, pkgs ...string) (map[string]map[string]string, error) {
	show := func() map[string]map[string]string {
		out, _ := exec.Command("apt-cache", append([]string{"show", "--no-all-versions"}, pkgs...)...).Output()
		all := map[string]map[string]string{}
		for _, stanza := range strings.Split(string(out), "\n\n") {
			f := map[string]string{}
			for _, line := range strings.Split(stanza, "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(k, " ") {
					f[k] = v
				}
			}
			if f["Package"] != "" && f["Version"] != "" {
				all[f["Package"]] = f
			}
		}
		return all
	}
	missing := func(all map[string]map[string]string) []string {
		var m []string
		for _, p := range pkgs {
			if all[p] == nil {
				m = append(m, p)
			}
		}
		return m
	}
	all := show()
	m := missing(all)
	if len(m) == 0 {
		return all, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("apt knows no package %s and only root can run apt-get update: run it, or prepare the nested Linux once as root", strings.Join(m, ", "))
	}
	fmt.Fprintf(log, "nestkvm: apt-cache knows no %s: running apt-get update\n", strings.Join(m, ", "))
	if b, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get update: %v\n%s", err, b)
	}
	all = show()
	if m := missing(all); len(m) > 0 {
		return nil, fmt.Errorf("apt has no package %s: the nested Linux needs Debian's %s and %s", strings.Join(m, ", "), kernelMeta, busyboxPkg)
	}
	return all, nil
}

// cacheKey names a prepared Linux: the packages and everything of ours
// that goes into the initramfs.
func cacheKey(pkgs []debPkg) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%q\n", initScript, wantModules)
	var b strings.Builder
	for _, p := range pkgs {
		b.WriteString(strings.NewReplacer(":", "%3a", "/", "_").Replace(p.name + "_" + p.version))
		b.WriteString("+")
	}
	return b.String() + hex.EncodeToString(h.Sum(nil))[:12]
}

// Prepare returns the nested Linux from the cache under dir, building it
// first (apt-get download, then the initramfs) when the archive's current
// packages are not there yet.
func Prepare(dir string, log io.Writer) (*Linux, error) {
	pkgs, err := resolve(log)
	if err != nil {
		return nil, fmt.Errorf("preparing the nested Linux: %w", err)
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, p.String())
	}
	key := filepath.Join(dir, cacheKey(pkgs))
	l := &Linux{Kernel: filepath.Join(key, "vmlinuz"), Initramfs: filepath.Join(key, "initramfs.cpio"), Packages: names}
	if _, err := os.Stat(l.Initramfs); err == nil {
		now := time.Now()
		os.Chtimes(key, now, now) // in use: not removed by a run preparing another version
		return l, nil
	}
	fmt.Fprintf(log, "nestkvm: preparing the nested Linux from %s in %s\n", strings.Join(names, " "), key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, "tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// apt's download sandbox user must be able to write there.
	os.Chmod(tmp, 0o777)
	args := []string{"download", "-q"}
	args = append(args, names...)
	cmd := exec.Command("apt-get", args...)
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %v\n%s", strings.Join(names, " "), err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != len(pkgs) {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files, want %d", strings.Join(names, " "), len(debs), len(pkgs))
	}
	files := map[string][]byte{}
	for _, d := range debs {
		if err := debFiles(d, files); err != nil {
			return nil, err
		}
	}
	kernel, rd, err := initramfs(files)
	if err != nil {
		return nil, fmt.Errorf("building the initramfs from %s: %w", strings.Join(names, " "), err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "vmlinuz"), kernel, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "initramfs.cpio"), rd, 0o644); err != nil {
		return nil, err
	}
	for _, d := range debs {
		os.Remove(d)
	}
	os.Chmod(tmp, 0o755)
	// Earlier versions are of no more use once the archive moved on, but
	// another run (another checkout, or one that started before the
	// archive moved) may still be booting one: only those unused for a day
	// go, and never the one this run wants.
	old, _ := filepath.Glob(filepath.Join(dir, "*+*"))
	for _, o := range old {
		if fi, err := os.Stat(o); err == nil && o != key && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(o)
		}
	}
	if err := os.Rename(tmp, key); err != nil {
		// Another run prepared the same one meanwhile.
		if _, serr := os.Stat(l.Initramfs); serr == nil {
			return l, nil
		}
		return nil, err
	}
	return l, nil
}

// debFiles adds the files of the .deb at path that the initramfs may need
// (the kernel, busybox, modules and their index) to files, by path.
func debFiles(deb string, files map[string][]byte) error {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb (Debian's dpkg) is needed to unpack %s: %w", filepath.Base(deb), err)
	}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("reading %s: %v", filepath.Base(deb), err)
		}
		// Merged-/usr packages put the same files under /usr.
		name := strings.TrimPrefix(path.Clean(strings.TrimPrefix(h.Name, ".")), "/usr")
		keep := strings.HasPrefix(name, "/boot/vmlinuz-") || name == "/bin/busybox" ||
			strings.HasPrefix(name, "/lib/modules/") && (strings.Contains(path.Base(name), ".ko") || strings.HasSuffix(name, "/modules.builtin"))
		if !keep || h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		files[name] = b
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %v: %s", filepath.Base(deb), err, stderr.String())
	}
	return nil
}

// modName is a module's name as modprobe spells it, from its file name.
func modName(file string) string {
	b := path.Base(file)
	b, _, _ = strings.Cut(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// modDepends returns the modules ko needs loaded first: the depends= of
// its .modinfo section, which depmod reads too (the package has no
// modules.dep; depmod writes it when the package is installed).
func modDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("no .modinfo section")
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var d []string
			for _, m := range strings.Split(string(v), ",") {
				if m != "" {
					d = append(d, strings.ReplaceAll(m, "-", "_"))
				}
			}
			return d, nil
		}
	}
	return nil, nil
}

// moduleOrder returns want and everything they depend on, each after its
// dependencies, with their contents; modules built into the kernel (in
// builtin) need no file. files maps module names to their packaged files,
// read returns one's ELF and depends what a module's ELF depends on.
func moduleOrder(files map[string]string, read func(string) ([]byte, error), depends func([]byte) ([]string, error), builtin map[string]bool, want []string) ([]string, map[string][]byte, error) {
	var order []string
	data := map[string][]byte{}
	var visit func(m, from string) error
	visit = func(m, from string) error {
		if _, ok := data[m]; ok {
			return nil
		}
		f, ok := files[m]
		if !ok {
			if builtin[m] {
				data[m] = nil
				return nil
			}
			return fmt.Errorf("the kernel has no module %s%s", m, from)
		}
		ko, err := read(f)
		if err != nil {
			return err
		}
		data[m] = ko
		deps, err := depends(ko)
		if err != nil {
			return fmt.Errorf("module %s: %v", f, err)
		}
		for _, d := range deps {
			if err := visit(d, " (needed by "+m+")"); err != nil {
				return err
			}
		}
		order = append(order, m)
		return nil
	}
	for _, w := range want {
		if err := visit(w, ""); err != nil {
			return nil, nil, err
		}
	}
	return order, data, nil
}

// initramfs builds the nested Linux's initramfs (uncompressed: unpacking
// is slow enough under the emulator) and returns it with the kernel.
func initramfs(files map[string][]byte) (kernel, rd []byte, err error) {
	mods := map[string]string{}
	builtin := map[string]bool{}
	for name, b := range files {
		switch {
		case strings.HasPrefix(name, "/boot/vmlinuz-"):
			kernel = b
		case strings.HasPrefix(name, "/lib/modules/") && strings.Contains(path.Base(name), ".ko"):
			mods[modName(name)] = name
		case strings.HasSuffix(name, "/modules.builtin"):
			for _, l := range strings.Fields(string(b)) {
				builtin[modName(l)] = true
			}
		}
	}
	busybox := files["/bin/busybox"]
	switch {
	case kernel == nil:
		return nil, nil, errors.New("no /boot/vmlinuz-* in the kernel package")
	case len(mods) == 0:
		return nil, nil, errors.New("no modules in the kernel package")
	case busybox == nil:
		return nil, nil, errors.New("no /bin/busybox in " + busyboxPkg)
	}
	read := func(f string) ([]byte, error) { return decompress(f, files[f]) }
	order, data, err := moduleOrder(mods, read, modDepends, builtin, wantModules)
	if err != nil {
		return nil, nil, err
	}
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("lib", 0o755),
		cpio.Directory("lib/modules", 0o755),
		cpio.Directory("proc", 0o755),
		cpio.Directory("share", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.StaticFile("init", initScript, 0o755),
		cpio.StaticFile("bin/busybox", string(busybox), 0o755),
	}
	for i, m := range order {
		// The number keeps /init's glob in dependency order.
		recs = append(recs, cpio.StaticFile(fmt.Sprintf("lib/modules/%02d-%s.ko", i, m), string(data[m]), 0o644))
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	if err := cpio.WriteRecords(w, recs); err != nil {
		return nil, nil, err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, nil, err
	}
	return kernel, buf.Bytes(), nil
}

// decompress returns module m's ELF: busybox's insmod takes no .ko.xz.
func decompress(m string, b []byte) ([]byte, error) {
	switch {
	case strings.HasSuffix(m, ".ko"):
		return b, nil
	case strings.HasSuffix(m, ".ko.xz"):
		r, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", m, err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", m, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("module %s: compression not supported (want .ko or .ko.xz)", m)
}
