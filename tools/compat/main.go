// Command compat runs test suites and programs in Amber guests and, in the
// same run, as native processes, and prints tables; it is what `make
// compat` runs. Three sets (-set):
//
//   - std: standard-library test suites (vmm test PKG against go test PKG);
//   - programs: real third-party commands (jq, yq, TOML, Jsonnet, HCL,
//     Starlark, JavaScript, Markdown, compressors, SQLite, a WebAssembly
//     runtime) built from a fresh module's module cache by vmm build and
//     by CGO_ENABLED=0 go build, run on the same input files, their
//     outputs compared;
//   - thirdparty: third-party test suites at pinned versions.
//
// Then "N passed, M failed" over the guest runs; the exit status is 1 when
// something that works natively does not in the guest.
//
//	go run ./tools/compat [-vmm bin/vmm] [-accel auto|kvm|tcg] [-set std,programs,thirdparty] [-run REGEXP] [-v] [PACKAGE ...]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/amberos/amber/tools/compat/suites"
	"github.com/amberos/amber/tools/guestrun"
)

type result struct {
	ok  bool
	dur time.Duration
	out string
}

func runCmd(dir, name string, args ...string) result {
	t0 := time.Now()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if dir != "" {
		cmd.Env = env()
	}
	out, err := cmd.CombinedOutput()
	return result{ok: err == nil, dur: time.Since(t0), out: string(out)}
}

func word(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

// tally counts the guest runs over all sets.
type tally struct{ passed, failed, regress, skipped int }

func (t *tally) add(native, guest bool) {
	if guest {
		t.passed++
		return
	}
	t.failed++
	if native {
		t.regress++
	}
}

func main() {
	vmmBin := flag.String("vmm", "bin/vmm", "the vmm binary")
	accelFlag := flag.String("accel", "auto", "how guests run: kvm, tcg (QEMU's emulator) or auto")
	sets := flag.String("set", "std,programs,thirdparty", "the comma-separated `sets` to run: std, programs, thirdparty")
	runRE := flag.String("run", "", "only packages and programs matching this `regexp`")
	verbose := flag.Bool("v", false, "print the output of failing runs")
	flag.Parse()
	accel, err := guestrun.Parse(*accelFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat:", err)
		os.Exit(2)
	}
	// vmm run and vmm test take it from there.
	os.Setenv("AMBER_ACCEL", string(accel))
	if abs, err := filepath.Abs(*vmmBin); err == nil {
		*vmmBin = abs
	}
	var re *regexp.Regexp
	if *runRE != "" {
		re = regexp.MustCompile(*runRE)
	}
	want := func(name string) bool { return re == nil || re.MatchString(name) }
	var t tally
	for _, set := range strings.Split(*sets, ",") {
		switch set {
		case "std":
			pkgs := flag.Args()
			if len(pkgs) == 0 {
				pkgs = suites.Packages
			}
			var ss []suites.Suite
			for _, p := range pkgs {
				if want(p) {
					ss = append(ss, suites.Suite{Pkg: p, Skips: suites.Skips[p]})
				}
			}
			if len(flag.Args()) == 0 {
				for _, p := range suites.OnData {
					if want(p + " /data") {
						ss = append(ss, suites.Suite{Pkg: p, Skips: append(slices.Clone(suites.Skips[p]), suites.DataSkips[p]...), OnData: true, Mem: "1G"})
					}
				}
			}
			fmt.Printf("# standard library (%s)\n", accel)
			runSuites(&t, *vmmBin, "", ss, *verbose)
		case "programs", "thirdparty":
			root, err := os.MkdirTemp("", "compat-")
			if err != nil {
				fmt.Fprintln(os.Stderr, "compat:", err)
				os.Exit(2)
			}
			defer os.RemoveAll(root)
			if set == "programs" {
				var ps []program
				for _, p := range programs {
					if want(p.name) {
						ps = append(ps, p)
					}
				}
				w, err := newWorkspace(root, ps, nil)
				if err != nil {
					fmt.Fprintln(os.Stderr, "compat:", err)
					os.Exit(2)
				}
				fmt.Printf("# third-party programs (%s)\n", accel)
				runPrograms(&t, *vmmBin, accel, w, ps, *verbose)
			} else {
				var ss []suites.Suite
				for _, s := range suites.ThirdParty {
					if want(s.Pkg) {
						ss = append(ss, s)
					}
				}
				w, err := newWorkspace(root, nil, ss)
				if err != nil {
					fmt.Fprintln(os.Stderr, "compat:", err)
					os.Exit(2)
				}
				fmt.Printf("# third-party test suites (%s)\n", accel)
				runSuites(&t, *vmmBin, w.mod, ss, *verbose)
			}
		default:
			fmt.Fprintf(os.Stderr, "compat: unknown set %q: want std, programs or thirdparty\n", set)
			os.Exit(2)
		}
		fmt.Println()
	}
	if t.skipped > 0 {
		fmt.Printf("compat: %d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped)
	} else {
		fmt.Printf("compat: %d passed, %d failed\n", t.passed, t.failed)
	}
	if t.regress > 0 {
		fmt.Printf("%d work natively but fail in the guest\n", t.regress)
		os.Exit(1)
	}
}

// runSuites runs each suite with go test and with vmm test, in dir (the
// generated module for third-party suites, the current directory for the
// standard library's), and prints a row for each.
func runSuites(t *tally, vmmBin, dir string, ss []suites.Suite, verbose bool) {
	fmt.Printf("%-38s %-7s %-7s %9s %9s %7s\n", "package", "native", "guest", "native-s", "guest-s", "ratio")
	var nativeTotal, guestTotal time.Duration
	for _, s := range ss {
		flags := []string{"-test.short"}
		goFlags := []string{"test", "-count=1", "-short"}
		if len(s.Skips) > 0 {
			flags = append(flags, "-test.skip", "^("+strings.Join(s.Skips, "|")+")$")
			goFlags = append(goFlags, "-skip", "^("+strings.Join(s.Skips, "|")+")$")
		}
		if s.Run != "" {
			flags = append(flags, "-test.run", s.Run)
			goFlags = append(goFlags, "-run", s.Run)
		}
		vmmArgs := []string{"test", "--timeout", "20m"}
		if s.PackMax != "" {
			vmmArgs = append(vmmArgs, "--pack-max", s.PackMax)
		}
		if s.Mem != "" {
			vmmArgs = append(vmmArgs, "--mem", s.Mem)
		}
		name := s.Pkg
		if s.OnData {
			disk, err := dataDisk()
			if err != nil {
				fmt.Fprintln(os.Stderr, "compat:", err)
				os.Exit(2)
			}
			defer os.Remove(disk)
			vmmArgs = append(vmmArgs, "--disk", disk)
			name += " (TMPDIR=/data/tmp)"
		}
		native := runCmd(dir, "go", append(goFlags, s.Pkg)...)
		guest := runCmd(dir, vmmBin, append(append(vmmArgs, s.Pkg, "--"), flags...)...)
		ratio := guest.dur.Seconds() / native.dur.Seconds()
		fmt.Printf("%-38s %-7s %-7s %9.2f %9.2f %7.2f\n", name, word(native.ok), word(guest.ok), native.dur.Seconds(), guest.dur.Seconds(), ratio)
		if verbose && dir != "" {
			fmt.Printf("    command: vmm test %s %s -- %s\n", strings.Join(vmmArgs[1:], " "), s.Pkg, strings.Join(quote(flags), " "))
		}
		t.add(native.ok, guest.ok)
		if !guest.ok && verbose {
			fmt.Println(indent(tail(guest.out, 30)))
		}
		nativeTotal += native.dur
		guestTotal += guest.dur
	}
	fmt.Printf("%-38s %-7s %-7s %9.2f %9.2f %7.2f\n", "total", "", "", nativeTotal.Seconds(), guestTotal.Seconds(), guestTotal.Seconds()/nativeTotal.Seconds())
}

// dataDisk makes a blank 1 GiB raw disk (sparse) for a suite on /data.
func dataDisk() (string, error) {
	f, err := os.CreateTemp("", "compat-data-*.raw")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(1 << 30); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// runPrograms builds each program natively and with vmm build, runs both
// on the same inputs, and prints whether the guest's output is the
// native one. Times are those of the runs (the guest's includes its boot).
func runPrograms(t *tally, vmmBin string, accel guestrun.Accel, w *workspace, ps []program, verbose bool) {
	fmt.Printf("%-11s %-7s %-9s %9s %9s %7s  %s\n", "program", "native", "guest", "native-s", "guest-s", "ratio", "module")
	exes, imgs, prepared := map[string]string{}, map[string]string{}, map[string]bool{}
	for _, p := range ps {
		if p.needsTo != "" && !prepared[p.needsTo] {
			prepared[p.needsTo] = true
			if err := w.prepare(p.needsTo); err != nil {
				fmt.Fprintln(os.Stderr, "compat:", err)
				os.Exit(2)
			}
		}
	}
	for _, p := range ps {
		var err error
		if exes[p.pkg] == "" {
			exes[p.pkg], err = w.native(p.name, p.pkg)
		}
		if err == nil && imgs[p.pkg] == "" {
			img := filepath.Join(w.bin, p.name+".img")
			cmd := exec.Command(vmmBin, "build", "--files", w.files, "-o", img, p.pkg)
			cmd.Dir = w.mod
			if out, berr := cmd.CombinedOutput(); berr != nil {
				err = fmt.Errorf("vmm build %s: %v\n%s", p.pkg, berr, out)
			} else {
				imgs[p.pkg] = img
			}
		}
		if err != nil {
			fmt.Printf("%-11s %-7s %-9s\n", p.name, "?", "FAIL")
			fmt.Println(indent(err.Error()))
			t.add(true, false)
			continue
		}
		nat := w.exec(p, exes[p.pkg], p.args...)
		nativeOK := nat.err == nil && nat.code == 0
		if p.stdin != "" && accel == guestrun.TCG {
			// QEMU's console passes stdin but never its end.
			fmt.Printf("%-11s %-7s %-9s %9.2f %9s %7s  %s\n", p.name, word(nativeOK), "skipped", nat.dur.Seconds(), "", "", p.module)
			fmt.Println("    (stdin has no end-of-file under QEMU: runs on KVM only)")
			t.skipped++
			continue
		}
		g := w.exec(p, vmmBin, append([]string{"run", "--mem", "512M", "--timeout", "10m", imgs[p.pkg], "--"}, p.args...)...)
		// Under QEMU the console carries stderr too, so compare all the
		// native program printed with all the guest printed.
		same := g.err == nil && g.code == nat.code && g.stdout == nat.stdout && g.stderr == nat.stderr
		if accel == guestrun.TCG {
			same = g.err == nil && g.code == nat.code && g.stdout+g.stderr == nat.stdout+nat.stderr
		}
		res := "same"
		if !same {
			res = fmt.Sprintf("differs:%d", g.code)
		}
		fmt.Printf("%-11s %-7s %-9s %9.2f %9.2f %7.2f  %s\n", p.name, word(nativeOK), res, nat.dur.Seconds(), g.dur.Seconds(), g.dur.Seconds()/nat.dur.Seconds(), p.module)
		if verbose {
			fmt.Printf("    command: %s\n", p.command())
			if !same {
				fmt.Println(indent("native:\n" + tail(nat.stdout+nat.stderr, 10) + "\nguest:\n" + tail(g.stdout+g.stderr, 10)))
			}
		}
		t.add(nativeOK, same)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// quote quotes the flags that a shell would split or expand.
func quote(flags []string) []string {
	var q []string
	for _, f := range flags {
		if strings.ContainsAny(f, "^$|*()[]\\ ") {
			f = "'" + f + "'"
		}
		q = append(q, f)
	}
	return q
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }
