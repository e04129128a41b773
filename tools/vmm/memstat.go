package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// memBreakdown says where this process's resident memory is now, outside
// the guest's RAM [guestLo, guestLo+guestLen): the vmm binary's own pages
// (text, data), the image's snapshot mapping (OpenImage), anonymous memory
// (the Go heap, goroutine and thread stacks, the runtime's metadata; with
// the part of it in transparent huge pages, and the runtime's own figures
// for the heap and stacks) and the rest. It is
// --boot-time's answer to "what is the VMM's own memory" (docs/benchmarks.md).
//
// The kernel merges the guest's anonymous mapping with neighbouring ones
// (smaps cannot split them), so the mappings that overlap the guest's RAM
// count as anonymous memory less guestRSS, the guest's part (VM.GuestRSS).
func memBreakdown(guestLo uintptr, guestLen, guestRSS uint64) (string, error) {
	exe, _ := os.Executable()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var binary, image, anon, other, merged uint64
	var cur *uint64
	var huge uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			// A mapping's header: "lo-hi perms offset dev inode [path]".
			lo, hi, _ := strings.Cut(fields[0], "-")
			start, _ := strconv.ParseUint(lo, 16, 64)
			end, _ := strconv.ParseUint(hi, 16, 64)
			name := ""
			if len(fields) >= 6 {
				name = strings.Join(fields[5:], " ")
			}
			switch {
			case guestLen > 0 && start < uint64(guestLo)+guestLen && end > uint64(guestLo):
				cur = &merged // the guest's RAM, the image pages mapped into it, and neighbours
			case exe != "" && name == exe:
				cur = &binary
			case strings.HasPrefix(name, "/memfd:amber-image"):
				cur = &image
			case name == "" || name == "[heap]" || name == "[stack]":
				cur = &anon
			default:
				cur = &other
			}
			continue
		}
		if fields[0] == "Rss:" && cur != nil && len(fields) >= 2 {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			*cur += kb
		}
		if fields[0] == "AnonHugePages:" && cur != nil && cur != &merged && len(fields) >= 2 {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			huge += kb
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	anon += merged - min(merged, guestRSS>>10)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return fmt.Sprintf("binary %d KiB, image snapshot %d KiB, anonymous %d KiB (transparent huge pages %d KiB; Go heap in use %d KiB, stacks %d KiB), other %d KiB",
		binary, image, anon, huge, ms.HeapInuse>>10, ms.StackInuse>>10, other), nil
}
