package main

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/amberos/amber/tools/compat/suites"
)

// testdata/inputs are the files the programs read (packed into every
// image with vmm build --files; natively read from the same directory);
// testdata/wrappers are main packages for libraries that have no command
// of their own (goja, SQLite, goldmark) and the WebAssembly program wazero
// runs. They live under testdata so that the repository's go vet and
// go build skip them: they import modules the repository does not require.
//
//go:embed testdata/inputs testdata/wrappers
var testdata embed.FS

// A program is a real third-party command run natively and in the guest
// on the same input; their outputs are compared.
type program struct {
	name    string
	pkg     string // what go build and vmm build are given
	module  string // module@version that go get fetches (the wrapper's library for ./cmd/...)
	args    []string
	stdin   string // an input file sent on standard input
	needsTo string // a native program that makes an input first (see prepare)
}

var programs = []program{
	{name: "gojq", pkg: "github.com/itchyny/gojq/cmd/gojq", module: "github.com/itchyny/gojq@v0.12.17",
		args: []string{"-c", "(.items | map(.n * 2)), (.items | length), .meta", "in.json"}},
	{name: "gojq-stdin", pkg: "github.com/itchyny/gojq/cmd/gojq", module: "github.com/itchyny/gojq@v0.12.17",
		args: []string{"-r", ".items[].name"}, stdin: "in.json"},
	{name: "yq", pkg: "github.com/mikefarah/yq/v4", module: "github.com/mikefarah/yq/v4@v4.47.2",
		args: []string{".server.ports[1], .users[].name", "in.yaml"}},
	{name: "yq-stdin", pkg: "github.com/mikefarah/yq/v4", module: "github.com/mikefarah/yq/v4@v4.47.2",
		args: []string{".server.tls.cert"}, stdin: "in.yaml"},
	{name: "tomljson", pkg: "github.com/pelletier/go-toml/v2/cmd/tomljson", module: "github.com/pelletier/go-toml/v2@v2.2.4",
		args: []string{"in.toml"}},
	{name: "tomlv", pkg: "github.com/BurntSushi/toml/cmd/tomlv", module: "github.com/BurntSushi/toml@v1.5.0",
		args: []string{"-types", "in.toml"}},
	{name: "jsonnet", pkg: "github.com/google/go-jsonnet/cmd/jsonnet", module: "github.com/google/go-jsonnet@v0.21.0",
		args: []string{"in.jsonnet"}},
	{name: "hclfmt", pkg: "github.com/hashicorp/hcl/v2/cmd/hclfmt", module: "github.com/hashicorp/hcl/v2@v2.24.0",
		args: []string{"in.hcl"}},
	{name: "starlark", pkg: "go.starlark.net/cmd/starlark", module: "go.starlark.net@v0.0.0-20250701195324-d457b4515e0e",
		args: []string{"prog.star"}},
	{name: "goja", pkg: "./cmd/js", module: "github.com/dop251/goja@v0.0.0-20250630131328-58d95d85e994",
		args: []string{"prog.js"}},
	{name: "goldmark", pkg: "./cmd/md", module: "github.com/yuin/goldmark@v1.7.12",
		args: []string{"in.md"}},
	{name: "s2d", pkg: "github.com/klauspost/compress/s2/cmd/s2d", module: "github.com/klauspost/compress@v1.18.0",
		args: []string{"-c", "text.txt.s2"}, needsTo: "s2c"},
	{name: "gxz", pkg: "github.com/ulikunitz/xz/cmd/gxz", module: "github.com/ulikunitz/xz@v0.5.12",
		args: []string{"-d", "-c", "text.txt.xz"}, needsTo: "gxz"},
	{name: "sqlite", pkg: "./cmd/sql", module: "modernc.org/sqlite@v1.38.0",
		args: []string{"/tmp/t.db", "db-rollback.sql"}},
	{name: "sqlite-wal", pkg: "./cmd/sql", module: "modernc.org/sqlite@v1.38.0",
		args: []string{"/tmp/t.db", "db-wal.sql"}},
	{name: "wazero", pkg: "github.com/tetratelabs/wazero/cmd/wazero", module: "github.com/tetratelabs/wazero@v1.9.0",
		args: []string{"run", "-mount=.:/", "wc.wasm", "/text.txt"}, needsTo: "wasm"},
}

// env is the go command's environment for the generated module.
func env(extra ...string) []string {
	return append(append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off"), extra...)
}

func goIn(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// workspace is a fresh module (go mod init) requiring every module the
// programs and suites name, with the wrappers in cmd/, and the programs'
// input files.
type workspace struct {
	mod, files, bin string
}

func newWorkspace(root string, progs []program, ss []suites.Suite) (*workspace, error) {
	w := &workspace{mod: filepath.Join(root, "m"), files: filepath.Join(root, "files"), bin: filepath.Join(root, "bin")}
	for _, d := range []string{w.mod, w.files, w.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := goIn(w.mod, "mod", "init", "compat.example/m"); err != nil {
		return nil, err
	}
	err := fs.WalkDir(testdata, "testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := testdata.ReadFile(p)
		if err != nil {
			return err
		}
		var dst string
		if rel, ok := strings.CutPrefix(p, "testdata/inputs/"); ok {
			dst = filepath.Join(w.files, rel)
		} else {
			dst = filepath.Join(w.mod, "cmd", strings.TrimPrefix(p, "testdata/wrappers/"))
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var gets []string
	for _, p := range progs {
		m := p.module
		if !strings.HasPrefix(p.pkg, "./") {
			m = p.pkg + "@" + strings.SplitN(p.module, "@", 2)[1]
		}
		if !seen[m] {
			seen[m] = true
			gets = append(gets, m)
		}
	}
	for _, s := range ss {
		if !seen[s.Module] {
			seen[s.Module] = true
			gets = append(gets, s.Module)
		}
	}
	for _, m := range gets {
		if err := goIn(w.mod, "get", m); err != nil {
			return nil, err
		}
	}
	// Text for the compressors and the word count: 170 KiB, many blocks.
	var text strings.Builder
	words := strings.Fields("alpha beta gamma delta amber kernel guest page")
	for i := 0; text.Len() < 170<<10; i++ {
		text.WriteString(words[i*7%len(words)] + " " + words[i*3%len(words)] + " " + words[i*i%len(words)] + " line\n")
	}
	return w, os.WriteFile(filepath.Join(w.files, "text.txt"), []byte(text.String()), 0o644)
}

// native builds pkg for the host as a user would without Amber.
func (w *workspace) native(name, pkg string, extraEnv ...string) (string, error) {
	exe := filepath.Join(w.bin, name)
	cmd := exec.Command("go", "build", "-o", exe, pkg)
	cmd.Dir = w.mod
	cmd.Env = env(append([]string{"CGO_ENABLED=0"}, extraEnv...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("native go build %s: %v\n%s", pkg, err, out)
	}
	return exe, nil
}

// prepare makes the inputs that come from other programs: compressed
// files (by the native compressors) and the WebAssembly program.
func (w *workspace) prepare(what string) error {
	var exe string
	var args []string
	var err error
	switch what {
	case "s2c":
		exe, err = w.native("s2c", "github.com/klauspost/compress/s2/cmd/s2c")
		args = []string{"-q", "text.txt"}
	case "gxz":
		exe, err = w.native("gxz-native", "github.com/ulikunitz/xz/cmd/gxz")
		args = []string{"-k", "-f", "text.txt"}
	case "wasm":
		_, err = w.native("wc.wasm", "./cmd/wc", "GOOS=wasip1", "GOARCH=wasm")
		if err == nil {
			err = os.Rename(filepath.Join(w.bin, "wc.wasm"), filepath.Join(w.files, "wc.wasm"))
		}
		return err
	default:
		return nil
	}
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = w.files
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", what, strings.Join(args, " "), err, out)
	}
	return nil
}

type progResult struct {
	stdout, stderr string
	code           int
	dur            time.Duration
	err            error
}

// exec runs exe in the inputs' directory, with stdin when the program
// reads one.
func (w *workspace) exec(p program, exe string, args ...string) progResult {
	cmd := exec.Command(exe, args...)
	cmd.Dir = w.files
	if p.stdin != "" {
		f, err := os.Open(filepath.Join(w.files, p.stdin))
		if err != nil {
			return progResult{err: err}
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	r := progResult{stdout: stdout.String(), stderr: stderr.String(), dur: time.Since(t0)}
	if _, ok := err.(*exec.ExitError); ok || err == nil {
		r.code = cmd.ProcessState.ExitCode()
	} else {
		r.err = err
	}
	// Programs that write a scratch file (SQLite) start afresh each run.
	for _, a := range p.args {
		if strings.HasPrefix(a, "/tmp/") {
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				os.Remove(a + suffix)
			}
		}
	}
	return r
}

// command is the shell command that reproduces a program's guest run.
func (p program) command() string {
	q := func(s string) string {
		if strings.ContainsAny(s, " |*()[]$,'\"") {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		return s
	}
	var args []string
	for _, a := range p.args {
		args = append(args, q(a))
	}
	img := strings.TrimSuffix(p.name, "-stdin") + ".img"
	s := "vmm build --files FILES -o " + img + " " + p.pkg + " && vmm run " + img + " -- " + strings.Join(args, " ")
	if p.stdin != "" {
		s += " < " + p.stdin
	}
	return s
}
