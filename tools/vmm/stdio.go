package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// stdioOptions tells the guest kernel what its standard descriptors are
// on the host (amber.stdin=, amber.stdout=, amber.stderr=; kernel/stdio.go),
// so fstat and isatty in the guest answer as they would natively. A
// stream that is no *os.File (a test's buffer) is a pipe; no stdin at all
// is /dev/null.
func stdioOptions(stdin io.Reader, stdout, stderr io.Writer) []string {
	var in any
	if stdin != nil {
		in = stdin
	}
	return []string{
		"amber.stdin=" + hostType(in, "chr"),
		"amber.stdout=" + hostType(stdout, "pipe"),
		"amber.stderr=" + hostType(stderr, "pipe"),
	}
}

// hostType classifies one stream; none is the answer for a nil one.
func hostType(s any, none string) string {
	if s == nil {
		return none
	}
	f, ok := s.(*os.File)
	if !ok {
		return "pipe"
	}
	if f == nil {
		return none
	}
	st, err := f.Stat()
	if err != nil {
		return "pipe"
	}
	switch m := st.Mode(); {
	case m&os.ModeCharDevice != 0:
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return "tty"
		}
		return "chr"
	case m.IsRegular():
		return fmt.Sprintf("file:%d", st.Size())
	}
	return "pipe"
}
