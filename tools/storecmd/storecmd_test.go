package storecmd

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The kill -9 test runs the CLI as a real child process: this binary.
	if os.Getenv("STORECMD_CHILD") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, bytes.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func must(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	r := run(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("store %v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return r.stdout
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{byte(size)})
	b := make([]byte, size)
	rng.Read(b)
	// Leave some zero pages and a partial last block.
	if size > 1<<20 {
		clear(b[1<<20 : 1<<20+3*4096])
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "vm.store")

	if r := run(t, nil, "help"); r.code != 0 || !strings.Contains(r.stdout, "clone FILE SRC DST") {
		t.Fatalf("help: %+v", r)
	}
	if r := run(t, nil, "-h"); r.code != 0 || !strings.Contains(r.stdout, "fsck FILE") {
		t.Fatalf("-h: %+v", r)
	}
	must(t, nil, "create", st)
	if r := run(t, nil, "create", st); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("second create: %+v", r)
	}

	// put from stdin and from a file; get to stdout and to a file.
	must(t, []byte("hello, world\n"), "put", st, "greeting")
	if got := must(t, nil, "get", st, "greeting"); got != "hello, world\n" {
		t.Fatalf("get: %q", got)
	}
	big := filepath.Join(dir, "big.img")
	want := randomFile(t, big, 100<<20)
	start := time.Now()
	must(t, nil, "put", st, "disk", big)
	t.Logf("put of 100 MiB: %v", time.Since(start))
	out := filepath.Join(dir, "out.img")
	must(t, nil, "get", st, "disk", out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatal("get of the 100 MiB object differs from what was put")
	}
	// put replaces.
	must(t, []byte("bye\n"), "put", st, "greeting", "-")
	if got := must(t, nil, "get", st, "greeting", "-"); got != "bye\n" {
		t.Fatalf("get after replace: %q", got)
	}

	// clone, ls shows sharing, du shows shared bytes.
	must(t, nil, "clone", st, "disk", "snap/1")
	ls := must(t, nil, "ls", st)
	for _, want := range []string{"disk", "snap/1", "greeting", "104857600"} {
		if !strings.Contains(ls, want) {
			t.Fatalf("ls lacks %q:\n%s", want, ls)
		}
	}
	shared := 0
	for _, l := range strings.Split(ls, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && (f[0] == "disk" || f[0] == "snap/1") {
			// Every block of both is shared.
			if f[1] != "104857600" || f[2] != "104857600" {
				t.Fatalf("ls: %s", l)
			}
			shared++
		}
		if len(f) == 3 && f[0] == "greeting" && f[2] != "0" {
			t.Fatalf("ls: %s", l)
		}
	}
	if shared != 2 {
		t.Fatalf("ls:\n%s", ls)
	}
	if ls := must(t, nil, "ls", st, "snap/"); strings.Contains(ls, "disk") || !strings.Contains(ls, "snap/1") {
		t.Fatalf("ls with prefix:\n%s", ls)
	}
	du := must(t, nil, "du", st)
	if !strings.Contains(du, "shared") || !strings.Contains(du, "104857600") {
		t.Fatalf("du:\n%s", du)
	}
	// Overwrite the clone's source: the clone keeps the old bytes.
	must(t, []byte("new disk"), "put", st, "disk")
	must(t, nil, "get", st, "snap/1", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("clone changed when its source was replaced")
	}

	// mv and rm.
	must(t, nil, "mv", st, "snap/1", "snap/2")
	if r := run(t, nil, "get", st, "snap/1"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("get of renamed: %+v", r)
	}
	if r := run(t, nil, "mv", st, "snap/2", "disk"); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("mv onto existing: %+v", r)
	}
	must(t, nil, "rm", st, "snap/2")
	if ls := must(t, nil, "ls", st); strings.Contains(ls, "snap") {
		t.Fatalf("ls after rm:\n%s", ls)
	}
	if out := must(t, nil, "fsck", st); !strings.Contains(out, "clean") {
		t.Fatalf("fsck: %s", out)
	}

	// Bad input: clear errors, no panics.
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"put"}, {"put", st}, {"get", st}, {"ls"}, {"mv", st, "a"},
		{"clone", st, "a"}, {"rm", st}, {"fsck"}, {"du"}, {"ls", st, "-x"},
		{"get", st, "nope"}, {"rm", st, "nope"}, {"clone", st, "nope", "x"},
		{"ls", filepath.Join(dir, "missing.store")}, {"fsck", filepath.Join(dir, "missing.store")},
		{"ls", big}, {"put", st, "", "-"}, {"put", st, "x", filepath.Join(dir, "missing")},
	} {
		r := run(t, nil, args...)
		if r.code == 0 || r.stderr == "" || strings.Contains(r.stderr, "internal error") || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("store %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}

	// fsck finds corruption: flip a byte in the greeting's data block.
	f, err := os.OpenFile(st, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := io.ReadAll(f)
	i := bytes.Index(img, []byte("bye\n"))
	if i < 0 {
		t.Fatal("greeting not found in the file")
	}
	f.WriteAt([]byte("BYE\n"), int64(i))
	f.Close()
	r := run(t, nil, "fsck", st)
	if r.code != 1 || !strings.Contains(r.stdout, `object "greeting": data block 0`) {
		t.Fatalf("fsck of a corrupt store: %+v", r)
	}
	if r := run(t, nil, "get", st, "greeting"); r.code != 1 || !strings.Contains(r.stderr, "checksum mismatch") || r.stdout != "" {
		t.Fatalf("get of a corrupt object: %+v", r)
	}
}

// TestKill9 kills a put mid-way with SIGKILL: the objects committed before
// are intact, the half-written one does not exist, fsck is clean, and a
// second writer meanwhile is told who holds the lock.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "vm.store")
	must(t, nil, "create", st)
	small := randomFile(t, filepath.Join(dir, "small"), 3<<20+123)
	must(t, nil, "put", st, "a", filepath.Join(dir, "small"))
	must(t, []byte("b content"), "put", st, "b")
	must(t, nil, "clone", st, "a", "a2")

	cmd := exec.Command(os.Args[0], "put", st, "big", "-")
	cmd.Env = append(os.Environ(), "STORECMD_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var childErr bytes.Buffer
	cmd.Stderr = &childErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Feed 40 MiB (more than the store buffers, so data reaches the file).
	buf := make([]byte, 1<<20)
	for i := 0; i < 40; i++ {
		for j := range buf {
			buf[j] = byte(i + j)
		}
		if _, err := stdin.Write(buf); err != nil {
			t.Fatalf("child died early: %v, %s", err, childErr.String())
		}
	}
	// The child holds the writer lock now.
	r := run(t, []byte("x"), "put", st, "c")
	if r.code != 1 || !strings.Contains(r.stderr, "store is locked by pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("second writer: %+v (child pid %d)", r, cmd.Process.Pid)
	}
	// Let it write a little more, then kill -9 mid-way.
	stdin.Write(buf)
	time.Sleep(50 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}
	stdin.Close()

	if fi, _ := os.Stat(st); fi.Size() < 40<<20 {
		t.Fatalf("the child wrote nothing to the store (size %d): the test does not test a torn put", fi.Size())
	}
	if out := must(t, nil, "fsck", st); !strings.Contains(out, "clean") {
		t.Fatalf("fsck after kill: %s", out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "small"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "a2"} {
		must(t, nil, "get", st, n, filepath.Join(dir, "out"))
		out, _ := os.ReadFile(filepath.Join(dir, "out"))
		if !bytes.Equal(out, small) || !bytes.Equal(got, small) {
			t.Fatalf("object %s changed by the killed put", n)
		}
	}
	if b := must(t, nil, "get", st, "b"); b != "b content" {
		t.Fatalf("b: %q", b)
	}
	if r := run(t, nil, "get", st, "big"); r.code == 0 {
		t.Fatal("the killed put's object exists")
	}
	// The lock died with the child: writing works again and reuses space.
	must(t, []byte("after"), "put", st, "c")
	if out := must(t, nil, "fsck", st); !strings.Contains(out, "clean") {
		t.Fatalf("fsck after a later put: %s", out)
	}
}

func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "put disk", 100<<20)
	if p.on {
		t.Fatal("a bytes.Buffer is not a terminal")
	}
	p.update(50 << 20)
	p.done(100 << 20)
	if buf.Len() != 0 {
		t.Fatalf("progress drawn on a non-terminal: %q", buf.String())
	}
	p.on = true
	p.update(10 << 20) // under a second: nothing yet
	if buf.Len() != 0 {
		t.Fatalf("progress drawn before a second passed: %q", buf.String())
	}
	p.start = p.start.Add(-2 * time.Second)
	p.update(50 << 20)
	p.done(100 << 20)
	out := buf.String()
	if !strings.Contains(out, "\rput disk [") || !strings.Contains(out, " 50%") || !strings.Contains(out, "100%") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("progress: %q", out)
	}
}
