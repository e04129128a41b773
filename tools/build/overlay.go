package build

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/amberos/amber/boot"
)

// The Go runtime's system calls are SYSCALL instructions in four assembly
// files. The overlay replaces each with a CALL of the kernel's entry, which
// keeps SYSCALL's register contract, so the runtime itself is unchanged.
var syscallFiles = []string{
	"runtime/sys_linux_amd64.s",
	"runtime/time_linux_amd64.s",
	"internal/runtime/syscall/linux/asm_linux_amd64.s",
	"syscall/asm_linux_amd64.s",
}

// expectedSites is how many SYSCALL lines those files hold, per Go
// release. A different count means the runtime changed in a way someone
// must look at before Amber trusts the rewrite.
var expectedSites = map[string]int{
	"go1.26": 46,
}

// asmSymbol spells a Go symbol the way assembly files write it: '.' in
// the package path becomes U+00B7 and '/' U+2215.
func asmSymbol(pkgPath, name string) string {
	p := strings.ReplaceAll(pkgPath, ".", "·")
	p = strings.ReplaceAll(p, "/", "∕")
	return p + "·" + name
}

// releaseOf maps "go1.26.8" to "go1.26".
func releaseOf(goVersion string) string {
	v := strings.TrimPrefix(goVersion, "go")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return goVersion
	}
	minor := parts[1]
	if i := strings.IndexAny(minor, "rcbeta-"); i > 0 {
		minor = minor[:i]
	}
	return "go" + parts[0] + "." + minor
}

// rewriteSyscalls returns src with every SYSCALL instruction replaced by a
// CALL of the kernel entry, and how many it replaced.
//
// A CALL makes a frameless function non-leaf, and the assembler then gives
// a function declared with a $0 frame a frame-pointer push, moving the
// stack pointer the kernel sees by 8 bytes — which breaks rt_sigreturn,
// whose frame is found from it. So such functions are marked NOFRAME,
// keeping their stack layout exactly as it was with SYSCALL.
func rewriteSyscalls(src []byte) ([]byte, int) {
	call := "CALL\t" + asmSymbol(boot.KernelPkgPath, "syscallEntry") + "(SB)"
	lines := bytes.SplitAfter(src, []byte("\n"))
	n := 0
	text := -1 // index of the current function's TEXT line
	for i, l := range lines {
		code := l
		if j := bytes.Index(code, []byte("//")); j >= 0 {
			code = code[:j]
		}
		t := bytes.TrimSpace(code)
		if bytes.HasPrefix(t, []byte("TEXT")) {
			text = i
			continue
		}
		if string(t) != "SYSCALL" {
			continue
		}
		indent := l[:bytes.Index(l, []byte("SYSCALL"))]
		rest := l[bytes.Index(l, []byte("SYSCALL"))+len("SYSCALL"):]
		lines[i] = append(append(append([]byte{}, indent...), call...), rest...)
		n++
		if text >= 0 {
			lines[text] = noFrame(lines[text])
		}
	}
	return bytes.Join(lines, nil), n
}

// noFrame adds NOFRAME to a TEXT line declaring a $0 frame.
func noFrame(line []byte) []byte {
	s := string(line)
	body, nl := strings.TrimRight(s, "\n"), s[len(strings.TrimRight(s, "\n")):]
	comment := ""
	if i := strings.Index(body, "//"); i >= 0 {
		body, comment = body[:i], body[i:]
	}
	parts := strings.Split(strings.TrimSpace(body), ",")
	frame := strings.TrimSpace(parts[len(parts)-1])
	if frame != "$0" && !strings.HasPrefix(frame, "$0-") || strings.Contains(body, "NOFRAME") {
		return line
	}
	if len(parts) == 2 {
		parts = []string{parts[0], "NOFRAME", parts[1]}
	} else {
		parts[1] = strings.TrimSpace(parts[1]) + "|NOFRAME"
	}
	if comment != "" {
		comment = " " + comment
	}
	return []byte(strings.Join(parts, ",") + comment + nl)
}

// writeOverlay writes the rewritten runtime files into dir and returns the
// overlay's Replace map (GOROOT path -> rewritten copy).
func writeOverlay(goroot, goVersion, dir string) (map[string]string, error) {
	want, ok := expectedSites[releaseOf(goVersion)]
	if !ok {
		var known []string
		for k := range expectedSites {
			known = append(known, k)
		}
		return nil, fmt.Errorf("Go %s is not supported by this Amber (supported: %s): the runtime's system-call sites have not been checked for it", goVersion, strings.Join(known, ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	replace := map[string]string{}
	total := 0
	for _, rel := range syscallFiles {
		src, err := os.ReadFile(filepath.Join(goroot, "src", rel))
		if err != nil {
			return nil, fmt.Errorf("reading the runtime source: %w", err)
		}
		out, n := rewriteSyscalls(src)
		total += n
		dst := filepath.Join(dir, strings.ReplaceAll(rel, "/", "_"))
		if err := writeIfChanged(dst, out); err != nil {
			return nil, err
		}
		replace[filepath.Join(goroot, "src", rel)] = dst
	}
	// The exit hook's registration, made reachable by linkname.
	hook := filepath.Join(dir, "exithook_amber.go")
	if err := writeIfChanged(hook, []byte(exitHookLinkname)); err != nil {
		return nil, err
	}
	replace[filepath.Join(goroot, "src", "internal", "runtime", "exithook", "amber_linkname.go")] = hook
	if total != want {
		return nil, fmt.Errorf("found %d SYSCALL sites in the runtime of Go %s (GOROOT %s), expected %d: the runtime changed; refusing to build an image that might make real system calls", total, goVersion, goroot, want)
	}
	return replace, nil
}

// exitHookLinkname is a file the overlay adds to internal/runtime/exithook:
// it marks Add as reachable by linkname (Go's linker refuses a linkname to
// a standard-library symbol its package does not mark). Package
// kernel/datafs/mount registers the hook that commits /data when the
// program exits (return from main, os.Exit): a process's writes outlive
// it on Linux, and a unikernel's exit is a power-off. It adds no code and
// changes no behaviour of the package.
const exitHookLinkname = `package exithook

import _ "unsafe"

//go:linkname Add
`

// writeIfChanged keeps a file's modification time when its content is the
// same, so repeated builds stay cached.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	// A temporary file of its own: concurrent builds write the same
	// files (with the same content), and a shared temporary name let one
	// rename the other's file away.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
