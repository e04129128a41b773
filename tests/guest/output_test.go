package guest

import (
	"bytes"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amberos/amber/tools/build/outfile/outfiletest"
)

// vmm build never destroys a file the user did not name as the output, nor
// a device node: -o /dev/null discards the image, other devices, named
// pipes, Go source files and other non-images are refused, and a directory
// gets the default name inside it.
func TestBuildOutputs(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	hello := filepath.Join(wd, "../../apps/hello")
	src := filepath.Join(dir, "main.go")
	srcText := []byte("package main\n\nfunc main() {}\n")
	os.WriteFile(src, srcText, 0o644)
	os.Symlink("main.go", filepath.Join(dir, "link.img"))
	null, full := outfiletest.Null(t), outfiletest.Full(t)
	os.Symlink(null, filepath.Join(dir, "null"))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("notes"), 0o644)
	os.Link(vmmBin, filepath.Join(dir, "vmm-link"))

	for _, c := range []struct{ out, want string }{
		{src, src + " already exists and is a Go source file: refusing to overwrite it"},
		{filepath.Join(dir, "link.img"), src + " already exists and is a Go source file"},
		{filepath.Join(dir, "notes.txt"), "notes.txt already exists and is not an image (an ELF file): refusing to overwrite it"},
		{full, full + " is a character device, not a regular file: refusing to replace it"},
		{fifo, fifo + " is a named pipe (FIFO), not a regular file: refusing to replace it"},
		{filepath.Join(dir, "vmm-link"), "is the executable running this build"},
		{filepath.Join(dir, "notes.txt", "x.img"), "cannot write " + filepath.Join(dir, "notes.txt", "x.img") + ": mkdir " + filepath.Join(dir, "notes.txt") + ": not a directory"},
	} {
		r := run(t, "build", "-o", c.out, hello)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("vmm build -o %s: exit %d, stderr %q; want %q", c.out, r.code, r.stderr, c.want)
		}
	}
	if b, err := os.ReadFile(src); err != nil || !bytes.Equal(b, srcText) {
		t.Errorf("the source file changed: %q, %v", b, err)
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v", err)
	}
	if st, err := os.Stat(vmmBin); err != nil || st.Size() < 1<<20 {
		t.Errorf("the vmm binary changed: %v", err)
	}
	for _, out := range []string{null, filepath.Join(dir, "null")} {
		if r := run(t, "build", "-o", out, hello); r.code != 0 {
			t.Errorf("vmm build -o %s: exit %d, stderr %q", out, r.code, r.stderr)
		}
	}
	for _, dev := range []string{null, full} {
		if st, err := os.Lstat(dev); err != nil || st.Mode()&fs.ModeCharDevice == 0 {
			t.Fatalf("%s is no longer a character device: %v", dev, err)
		}
	}
	// -o DIR, as go build: DIR/NAME.img.
	if r := run(t, "build", "-o", dir, hello); r.code != 0 {
		t.Fatalf("vmm build -o DIR: exit %d, stderr %q", r.code, r.stderr)
	}
	img := filepath.Join(dir, "hello.img")
	f, err := elf.Open(img)
	if err != nil {
		t.Fatalf("-o DIR did not write DIR/hello.img: %v", err)
	}
	f.Close()
	// An existing image is replaced; so is an empty file. A missing
	// directory is made, as go build does.
	os.WriteFile(filepath.Join(dir, "empty.img"), nil, 0o644)
	for _, out := range []string{img, filepath.Join(dir, "empty.img"), filepath.Join(dir, "new", "dir", "x.img")} {
		if r := run(t, "build", "-o", out, hello); r.code != 0 {
			t.Errorf("vmm build -o %s: exit %d, stderr %q", out, r.code, r.stderr)
		}
	}
	noTemps(t, dir)
}

func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// fakeGo puts a go command on PATH that, for "go build", writes part of
// an image to its -o file, says so by creating dir/started and then waits
// forever; any other go command is the real one.
func fakeGo(t *testing.T, dir string) []string {
	t.Helper()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	script := `#!/bin/sh
if [ "$1" = build ]; then
	out=
	prev=
	for a in "$@"; do
		[ "$prev" = -o ] && out=$a
		prev=$a
	done
	printf 'partial image' > "$out"
	: > "` + dir + `/started"
	while :; do sleep 0.05; done
fi
exec "` + real + `" "$@"
`
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// Ctrl-C in the middle of vmm build stops it with status 130 and leaves
// neither the image nor a temporary file behind.
func TestBuildInterruptedOutput(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	out := filepath.Join(dir, "out", "hello.img")
	os.Mkdir(filepath.Dir(out), 0o755)
	cmd := exec.Command(vmmBin, "build", "-o", out, filepath.Join(wd, "../../apps/hello"))
	cmd.Env = fakeGo(t, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait (without a deadline: the test's own timeout is the limit)
	// until the go build is under way.
	for {
		if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(stderr.String(), "vmm build: interrupted; "+out+" not written") {
		t.Errorf("interrupted build: %v, stderr %q", cmd.ProcessState, stderr.String())
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
}
