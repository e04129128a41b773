package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
)

// What the program's standard descriptors are on the host. Descriptors
// 0-2 are the console, but a program asks fstat whether its input is
// piped (os.Stdin.Stat()'s ModeCharDevice) and TCGETS whether it is a
// terminal, and answering "terminal" for a pipe sends tools like yq to
// print their usage instead of reading. The VMM passes the host's view
// as amber.stdin=, amber.stdout=, amber.stderr= with a value of tty,
// chr (a character device that is no terminal, /dev/null), pipe (also
// sockets) or file:SIZE; fstat and the terminal ioctls of the first
// three descriptions answer from it. Without the options (another PVH
// loader) the console stays a character device that is no terminal.

const (
	hostUnknown = iota
	hostTTY
	hostChr
	hostPipe
	hostFile
)

// stdioInit reads the host's view of descriptors 0-2 from the command
// line.
//
//go:nosplit
func stdioInit(si *boot.StartInfo) {
	stdioOption(si, "amber.stdin=", &ofiles[0])
	stdioOption(si, "amber.stdout=", &ofiles[1])
	stdioOption(si, "amber.stderr=", &ofiles[2])
}

//go:nosplit
func stdioOption(si *boot.StartInfo, key string, o *ofile) {
	v := cmdlineValue(si, key)
	switch {
	case v == nil:
	case len(v) == 3 && hasPrefix(v, "tty"):
		o.host = hostTTY
	case len(v) == 3 && hasPrefix(v, "chr"):
		o.host = hostChr
	case len(v) == 4 && hasPrefix(v, "pipe"):
		o.host = hostPipe
	case hasPrefix(v, "file:"):
		n := int64(0)
		for _, c := range v[5:] {
			if c < '0' || c > '9' || n > (1<<62)/10 {
				return
			}
			n = n*10 + int64(c-'0')
		}
		o.host, o.hostSize = hostFile, n
	}
}

// cmdlineValue returns the value of the kernel option key ("amber.X="),
// or nil. The value lives in cmdlineScratch until the next call.
//
//go:nosplit
func cmdlineValue(si *boot.StartInfo, key string) []byte {
	rest := cmdlineBytes(si)
	for {
		tok, r, ok := nextToken(rest, cmdlineScratch[:])
		if !ok || len(tok) == 2 && tok[0] == '-' && tok[1] == '-' {
			return nil
		}
		rest = r
		if hasPrefix(tok, key) && isOption(tok) && !hasPrefix(tok, boot.EnvOption) {
			return tok[len(key):]
		}
	}
}

// hostStat fills st for a standard description whose host type is known;
// false leaves it to the console's inode.
//
//go:nosplit
func hostStat(o *ofile, st *statT) bool {
	switch o.host {
	case hostChr:
		fillStat(o.ino, st)
		st.mode = sIFCHR | 0o666
		st.rdev = devNull
	case hostPipe:
		fillStat(o.ino, st)
		st.dev = fsDev + 1
		st.mode = sIFIFO | 0o600
		st.rdev = 0
		st.size = 0
	case hostFile:
		fillStat(o.ino, st)
		st.mode = sIFREG | 0o644
		st.rdev = 0
		st.size = o.hostSize
		st.blocks = (st.size + 511) / 512
	default:
		return false
	}
	return true
}

// Terminal ioctls (asm-generic/ioctls.h).
const (
	tcgets     = 0x5401
	tcsets     = 0x5402
	tcsetsw    = 0x5403
	tcsetsf    = 0x5404
	tiocgwinsz = 0x5413
	tiocgpgrp  = 0x540f
)

// termios is the kernel's struct termios (36 bytes). The console keeps
// one setting: what TCSETS stored is what TCGETS returns, but the serial
// line and the host terminal are not changed (no raw mode).
type termios struct {
	iflag, oflag, cflag, lflag uint32
	line                       uint8
	cc                         [19]uint8
}

// ttyState starts as a cooked terminal: ICRNL IXON, OPOST ONLCR, B38400
// CS8 CREAD, ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN, and the
// usual control characters.
var ttyState = termios{
	iflag: 0x500, oflag: 0x5, cflag: 0xbf, lflag: 0x8a3b,
	cc: [19]uint8{3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22},
}

// consoleIoctl serves the terminal requests on the console: a terminal
// only if the host's descriptor is one.
//
//go:nosplit
func consoleIoctl(o *ofile, req, arg uint64) int64 {
	if o.host != hostTTY {
		return -eNOTTY
	}
	switch req {
	case tcgets:
		if !copyOut(uintptr(arg), unsafe.Pointer(&ttyState), unsafe.Sizeof(ttyState)) {
			return -eFAULT
		}
		return 0
	case tcsets, tcsetsw, tcsetsf:
		var t termios
		if !copyIn(unsafe.Pointer(&t), uintptr(arg), unsafe.Sizeof(t)) {
			return -eFAULT
		}
		ttyState = t
		return 0
	case tiocgwinsz:
		ws := [4]uint16{24, 80, 0, 0} // rows, columns: the host's are not passed
		if !copyOut(uintptr(arg), unsafe.Pointer(&ws), 8) {
			return -eFAULT
		}
		return 0
	case tiocgpgrp:
		pg := int32(1)
		if !copyOut(uintptr(arg), unsafe.Pointer(&pg), 4) {
			return -eFAULT
		}
		return 0
	}
	return -eINVAL
}
