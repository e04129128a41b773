// Command compat runs standard-library test suites in Amber guests and, in
// the same run, as native processes, and prints a table: package, native
// result, guest result, time ratio; then "N passed, M failed" for the
// guest. It is what `make compat` runs.
//
//	go run ./tools/compat [-vmm bin/vmm] [-run REGEXP] [PACKAGE ...]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/amberos/amber/tools/compat/suites"
)

type result struct {
	ok  bool
	dur time.Duration
	out string
}

func runCmd(name string, args ...string) result {
	t0 := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	return result{ok: err == nil, dur: time.Since(t0), out: string(out)}
}

func main() {
	vmmBin := flag.String("vmm", "bin/vmm", "the vmm binary")
	runRE := flag.String("run", "", "only packages matching this `regexp`")
	verbose := flag.Bool("v", false, "print the output of failing runs")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = suites.Packages
	}
	var re *regexp.Regexp
	if *runRE != "" {
		re = regexp.MustCompile(*runRE)
	}
	fmt.Printf("%-18s %-7s %-7s %9s %9s %7s\n", "package", "native", "guest", "native-s", "guest-s", "ratio")
	passed, failed := 0, 0
	var nativeTotal, guestTotal time.Duration
	regress := 0
	for _, pkg := range pkgs {
		if re != nil && !re.MatchString(pkg) {
			continue
		}
		flags := []string{"-test.short"}
		goFlags := []string{"test", "-count=1", "-short"}
		if s := suites.Skips[pkg]; len(s) > 0 {
			flags = append(flags, "-test.skip", "^("+strings.Join(s, "|")+")$")
			goFlags = append(goFlags, "-skip", "^("+strings.Join(s, "|")+")$")
		}
		native := runCmd("go", append(goFlags, pkg)...)
		guest := runCmd(*vmmBin, append([]string{"test", pkg, "--"}, flags...)...)
		word := func(ok bool) string {
			if ok {
				return "ok"
			}
			return "FAIL"
		}
		ratio := guest.dur.Seconds() / native.dur.Seconds()
		fmt.Printf("%-18s %-7s %-7s %9.2f %9.2f %7.2f\n", pkg, word(native.ok), word(guest.ok), native.dur.Seconds(), guest.dur.Seconds(), ratio)
		if guest.ok {
			passed++
		} else {
			failed++
			if native.ok {
				regress++
			}
			if *verbose {
				fmt.Println(indent(tail(guest.out, 30)))
			}
		}
		nativeTotal += native.dur
		guestTotal += guest.dur
	}
	fmt.Printf("%-18s %-7s %-7s %9.2f %9.2f %7.2f\n", "total", "", "", nativeTotal.Seconds(), guestTotal.Seconds(), guestTotal.Seconds()/nativeTotal.Seconds())
	fmt.Printf("compat: %d passed, %d failed\n", passed, failed)
	if regress > 0 {
		fmt.Printf("%d package(s) pass natively but fail in the guest\n", regress)
		os.Exit(1)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }
