package build

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/tools/build/elfpatch"
)

// gate puts a go command on PATH that, for "go build", records its -o
// argument in dir/o.PID and waits until dir/release exists before running
// the real go build; any other go command is the real one.
func gate(t *testing.T, dir string) {
	t.Helper()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	script := `#!/bin/sh
if [ "$1" = build ]; then
	prev=
	for a in "$@"; do
		[ "$prev" = -o ] && printf '%s' "$a" > "` + dir + `/o.$$"
		prev=$a
	done
	while [ ! -e "` + dir + `/release" ]; do sleep 0.02; done
fi
exec "` + real + `" "$@"
`
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// waitFiles waits until n go builds have recorded their -o and returns
// them; it fails at once when one of the builds ends first (an error
// arrives on builds), and after five minutes.
func waitFiles(t *testing.T, dir string, n int, builds <-chan error) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		// A build that ends before it reaches the gate failed: say why
		// instead of waiting for files that will never come.
		select {
		case err := <-builds:
			t.Fatalf("a build ended before linking: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d builds did not reach the link step within 5 minutes", n)
		}
		m, _ := filepath.Glob(filepath.Join(dir, "o.*"))
		if len(m) == n {
			var outs []string
			for _, f := range m {
				b, err := os.ReadFile(f)
				if err != nil || len(b) == 0 {
					break // being written
				}
				outs = append(outs, string(b))
			}
			if len(outs) == n {
				return outs
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func moduleRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
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

// Two builds of one output link into different temporary files (they
// shared one name, and the image was a mix of both), and the result is a
// whole image.
func TestConcurrentBuildsOfOneOutput(t *testing.T) {
	dir := t.TempDir()
	gate(t, dir)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	out := filepath.Join(outDir, "same.img")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	early := make(chan error, len(errs))
	released := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = Build(context.Background(), Options{Package: "./apps/hello", Dir: moduleRoot(t), Output: out})
			select {
			case <-released:
			default:
				early <- errs[i]
			}
		})
	}
	outs := waitFiles(t, dir, 2, early)
	close(released)
	if outs[0] == outs[1] {
		t.Errorf("both builds link into %s", outs[0])
	}
	for _, o := range outs {
		if filepath.Dir(o) != outDir || o == out {
			t.Errorf("a build links into %s, not a temporary file next to %s", o, out)
		}
	}
	os.WriteFile(filepath.Join(dir, "release"), nil, 0o644)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// A whole image: its notes are where its program headers say.
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	notes, err := elfpatch.ReadNotes(f)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range notes {
		found = found || (n.Name == boot.NoteNameAmber && n.Type == boot.NoteTypeABI)
	}
	if !found {
		t.Errorf("the image lacks the Amber note: %+v", notes)
	}
	noTemps(t, outDir)
}

// A cancelled build (Ctrl-C in vmm build) stops the go command and leaves
// neither the output nor a temporary file.
func TestCancelledBuild(t *testing.T) {
	dir := t.TempDir()
	gate(t, dir) // never released
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := Build(ctx, Options{Package: "./apps/hello", Dir: moduleRoot(t), Output: filepath.Join(outDir, "x.img")})
		done <- err
	}()
	waitFiles(t, dir, 1, done)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
	ents, _ := os.ReadDir(outDir)
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
}
