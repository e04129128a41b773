package kernel

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/amberos/amber/boot"
)

// cString reads a NUL-terminated string at addr.
func cString(addr uint64) string {
	var b []byte
	for p := uintptr(addr); *(*byte)(ptr(p)) != 0; p++ {
		b = append(b, *(*byte)(ptr(p)))
	}
	return string(b)
}

// The process stack is what _rt0_amd64_linux reads: argc, argv, NULL,
// envp, NULL, auxv. Laid out here in an ordinary buffer.
func TestProcessStackLayout(t *testing.T) {
	buf := make([]uint64, 64<<10/8) // 64 KiB, 8-byte aligned
	top := uintptr(unsafe.Pointer(&buf[len(buf)-1])) + 8
	cmd := boot.Cmdline([]string{"amber.argv0=prog", "amber.other=1"}, []string{"HOME=/", "SPACED=a b"}, []string{"-v", "two words", ""})
	sp := layoutProcessStack([]byte(cmd), top, 0x1111, 0x2222)
	if sp%16 != 0 || sp >= top || sp < top-uintptr(len(buf)*8) {
		t.Fatalf("sp %#x not 16-byte aligned inside the buffer", sp)
	}
	w := sp
	next := func() uint64 { v := *u64at(w); w += 8; return v }
	argc := next()
	var args []string
	for i := uint64(0); i < argc; i++ {
		args = append(args, cString(next()))
	}
	if next() != 0 {
		t.Fatal("argv not NULL-terminated")
	}
	var env []string
	for e := next(); e != 0; e = next() {
		env = append(env, cString(e))
	}
	want := []string{"prog", "-v", "two words", ""}
	if len(args) != len(want) {
		t.Fatalf("argv %q, want %q", args, want)
	}
	for i := range want {
		if args[i] != want[i] {
			t.Errorf("argv[%d] = %q, want %q", i, args[i], want[i])
		}
	}
	if len(env) != 2 || env[0] != "HOME=/" || env[1] != "SPACED=a b" {
		t.Errorf("envp %q", env)
	}
	aux := map[uint64]uint64{}
	for {
		k, v := next(), next()
		if k == atNull {
			break
		}
		aux[k] = v
	}
	if aux[atPagesz] != 4096 || cString(aux[atExecfn]) != "prog" {
		t.Errorf("auxv %v", aux)
	}
	r := aux[atRandom]
	if r == 0 || *u64at(uintptr(r)) != 0x1111 || *u64at(uintptr(r) + 8) != 0x2222 {
		t.Errorf("AT_RANDOM at %#x does not hold the random bytes", r)
	}
	if _, ok := aux[atSecure]; !ok {
		t.Error("no AT_SECURE")
	}
}

func TestProcessStackDefaults(t *testing.T) {
	buf := make([]uint64, 16<<10/8)
	top := uintptr(unsafe.Pointer(&buf[len(buf)-1])) + 8
	sp := layoutProcessStack(nil, top, 1, 2)
	if argc := *u64at(sp); argc != 1 || cString(*u64at(sp + 8)) != "app" {
		t.Errorf("empty command line: argc %d argv0 %q", argc, cString(*u64at(sp + 8)))
	}
	// A bare word before "--" is an argument, as Linux passes it to init.
	sp = layoutProcessStack([]byte("word K=V"), top, 1, 2)
	if argc := *u64at(sp); argc != 2 || cString(*u64at(sp + 16)) != "word" || cString(*u64at(sp + 32)) != "K=V" {
		t.Errorf("argc %d", argc)
	}
}

func TestRandomAndTime(t *testing.T) {
	timeInit(2_500_000_000, 0, 0)
	if nsMult != (1e9<<32)/2_500_000_000 {
		t.Errorf("nsMult %d", nsMult)
	}
	var ts timespec
	ts.set(3_500_000_001)
	if ts.sec != 3 || ts.nsec != 500_000_001 || ts.ns() != 3_500_000_001 {
		t.Errorf("timespec %+v", ts)
	}
	for _, tok := range []struct {
		s  string
		ok bool
	}{{"amber.x=1", true}, {"A=B", false}, {"a.b", false}, {".x=1", false}, {"x.y=", true}} {
		if isOption([]byte(tok.s)) != tok.ok {
			t.Errorf("isOption(%q) = %v", tok.s, !tok.ok)
		}
	}
}

// stackEnv lays out the process stack for a command line and returns
// argv and envp.
func stackEnv(t *testing.T, cmd string) (args, env []string) {
	t.Helper()
	buf := make([]uint64, 64<<10/8)
	top := uintptr(unsafe.Pointer(&buf[len(buf)-1])) + 8
	w := layoutProcessStack([]byte(cmd), top, 1, 2)
	next := func() uint64 { v := *u64at(w); w += 8; return v }
	for argc := next(); argc > 0; argc-- {
		args = append(args, cString(next()))
	}
	next()
	for e := next(); e != 0; e = next() {
		env = append(env, cString(e))
	}
	return args, env
}

// `vmm run --env my.var=1` dropped the variable, its dotted name read as
// a kernel option (issue 8): any name reaches the program, and options
// come only from --cmdline.
func TestDottedEnvironment(t *testing.T) {
	env := []string{"my.var=1", "amber.tick=off", "PLAIN=a.b=c", "x.y=with space"}
	cmd := boot.Cmdline([]string{"amber.argv0=prog", "amber.other=1"}, env, []string{"amber.tick=off"})
	args, got := stackEnv(t, cmd)
	if strings.Join(got, "|") != strings.Join(env, "|") {
		t.Errorf("command line %q: envp %q, want %q", cmd, got, env)
	}
	if len(args) != 2 || args[0] != "prog" || args[1] != "amber.tick=off" {
		t.Errorf("argv %q", args)
	}
}

// Only a kernel option turns the tick off: not an environment variable
// or an argument that reads the same, quoted or not.
func TestCmdlineHas(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want bool
	}{
		{boot.Cmdline([]string{"amber.tick=off"}, nil, nil), true},
		{boot.Cmdline([]string{"amber.argv0=x", "amber.tick=off"}, []string{"A=B"}, []string{"y"}), true},
		{boot.Cmdline(nil, []string{"amber.tick=off"}, nil), false},
		{boot.Cmdline(nil, []string{"X=a amber.tick=off b"}, nil), false},
		{boot.Cmdline(nil, nil, []string{"amber.tick=off"}), false},
		{boot.Cmdline([]string{"amber.tick=offx"}, nil, nil), false},
		{"", false},
	} {
		b := append([]byte(c.cmd), 0)
		si := &boot.StartInfo{CmdlinePaddr: uint64(uintptr(unsafe.Pointer(&b[0])))}
		if got := cmdlineHas(si, "amber.tick=off"); got != c.want {
			t.Errorf("cmdlineHas(%q) = %v, want %v", c.cmd, got, c.want)
		}
	}
}
