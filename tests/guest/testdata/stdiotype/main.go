// Command stdiotype prints what its standard descriptors are, as a
// program deciding whether its input is piped sees them: fstat's type
// (and a regular file's size) and whether TCGETS calls it a terminal.
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	for i, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		st, err := f.Stat()
		if err != nil {
			fmt.Printf("fd%d: stat: %v\n", i, err)
			continue
		}
		m := st.Mode()
		kind := "other"
		switch {
		case m&os.ModeNamedPipe != 0:
			kind = "pipe"
		case m&os.ModeCharDevice != 0:
			kind = "chardev"
		case m.IsRegular():
			kind = fmt.Sprintf("file size=%d", st.Size())
		}
		var termios [64]byte
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(i), syscall.TCGETS, uintptr(unsafe.Pointer(&termios)))
		fmt.Printf("fd%d: %s isatty=%v\n", i, kind, e == 0)
	}
}
