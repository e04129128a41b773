package kernel

import (
	"unsafe"

	"github.com/amberos/amber/boot"
	"github.com/amberos/amber/drivers/portio"
	"github.com/amberos/amber/drivers/uart16550"
)

// Console output. Under Amber's VMM a whole buffer goes out in one
// hypercall (an exit costs ~26 µs here, so never one per byte); elsewhere
// the 16550 UART at COM1 is driven byte by byte.

// bounce is identity-mapped, so its virtual address is the physical
// address the VMM reads. User buffers may live anywhere.
var bounce [64 << 10]byte

// consoleWrite writes p to the console (fd 1 or 2) and returns the bytes
// written, or -errno if none were: the VMM reports its own write errors
// (EPIPE, ENOSPC, EIO, ...), as the program would see them natively, and
// EINTR when a signal from the host (Ctrl-C) interrupted a write waiting
// for a full pipe.
//
//go:nosplit
func consoleWrite(fd int, p []byte) int64 {
	total := int64(0)
	for len(p) > 0 {
		n := copy(bounce[:], p)
		if !pvHypercalls {
			uart16550.Write(uart16550.COM1, bounce[:n])
			p = p[n:]
			total += int64(n)
			continue
		}
		r := hcall(boot.HCConsoleWrite, uint64(fd), uint64(uintptr(unsafe.Pointer(&bounce[0]))), uint64(n))
		if r < 0 {
			if total > 0 {
				return total // the next write reports the error
			}
			switch r {
			case -eIO, -eNOSPC, -ePIPE, -eFBIG, -eDQUOT, -eINTR:
				return r
			}
			return -eIO
		}
		if r > int64(n) {
			r = int64(n)
		}
		total += r
		if r < int64(n) {
			return total
		}
		p = p[n:]
	}
	return total
}

// sigPIPE is SIGPIPE.
const sigPIPE = 13

// eDQUOT is EDQUOT, which a VMM writing to a file may report.
const eDQUOT = 122

// consoleWriteSys is write(2) on the console: on EPIPE the writing thread
// also gets SIGPIPE, as Linux does for a pipe without readers; on EINTR
// the host's signals are taken now, so the one that interrupted the write
// is delivered as the call returns (the write may then be restarted).
//
//go:nosplit
func consoleWriteSys(fd int, p []byte) int64 {
	r := consoleWrite(fd, p)
	switch r {
	case -ePIPE:
		sendSignal(cpu0.cur, sigPIPE)
	case -eINTR:
		if hostSignals != 0 && *u64at(hostSignals) != 0 {
			takeHostSignals()
		}
	}
	return r
}

// consoleRead returns input bytes if any are ready: n > 0 bytes, 0 none
// yet, -1 end of input.
//
//go:nosplit
func consoleRead(p []byte) int {
	if !pvHypercalls {
		return uart16550.Read(uart16550.COM1, p)
	}
	if len(p) > len(bounce) {
		p = p[:len(bounce)]
	}
	n := hcall(boot.HCConsoleRead, 0, uint64(uintptr(unsafe.Pointer(&bounce[0]))), uint64(len(p)))
	if n > 0 {
		copy(p, bounce[:n])
	}
	return int(n)
}

// kprint writes a kernel message to the console (stderr).
//
//go:nosplit
func kprint(s string) {
	consoleWrite(2, unsafe.Slice(unsafe.StringData(s), len(s)))
}

//go:nosplit
func kprintHex(v uint64) {
	var b [18]byte
	b[0], b[1] = '0', 'x'
	for i := 0; i < 16; i++ {
		b[17-i] = "0123456789abcdef"[v&15]
		v >>= 4
	}
	consoleWrite(2, b[:])
}

//go:nosplit
func kprintInt(v int64) {
	var b [20]byte
	i := len(b)
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	for {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	consoleWrite(2, b[i:])
}

// kfatal reports a kernel bug and stops the VM with a crash report. It
// never returns.
//
//go:nosplit
func kfatal(msg string) {
	if pvHypercalls {
		hcall(boot.HCCrash, 0, uint64(uintptr(unsafe.Pointer(unsafe.StringData(msg)))), uint64(len(msg)))
	}
	kprint("amber: kernel panic: ")
	kprint(msg)
	kprint("\n")
	exitVM(boot.ExitCrash)
}

// com2 is the second serial port's data register: the exit status's
// side channel under QEMU (exitVM).
const com2 = 0x2f8

// exitVM powers the VM off with an exit status.
//
//go:nosplit
func exitVM(status int) {
	if pvHypercalls {
		hcall(boot.HCExit, uint64(status), 0, 0)
	}
	// QEMU's isa-debug-exit at 0xf4 exits with (v<<1)|1, of which the
	// host's exit status keeps only v's low 7 bits; the whole byte goes
	// to the second serial port first, where vmm run --accel tcg reads it
	// (tools/qemu). Without a device there, the write goes nowhere.
	portio.Out8(com2, uint8(status))
	portio.Out8(0xf4, uint8(status))
	for {
	}
}

// Mark reports a named point in time to the VMM (used to measure boot:
// `vmm run --boot-time`). A no-op outside Amber's VMM.
func Mark(id uint64) { markCall(id) }

//go:nosplit
func sysAmberMark(f *sysFrame) int64 {
	mark(f.rdi)
	return 0
}

//go:nosplit
func mark(id uint64) {
	if pvHypercalls {
		hcall(boot.HCMark, id, rdtsc(), 0)
	}
}

// snapName holds the name of a snapshot the program asks for, in kernel
// memory the VMM can read by physical address.
var snapName [128]byte

// sysAmberSnapshot asks the VMM for a whole-VM snapshot (guest.Snapshot);
// the VMM answers 0 in this VM and 1 in every VM restored from it.
//
//go:nosplit
func sysAmberSnapshot(f *sysFrame) int64 {
	if !pvHypercalls {
		return -eNOSYS
	}
	n := uintptr(f.rsi)
	if n == 0 || n > uintptr(len(snapName)) {
		return -eINVAL
	}
	if !copyIn(unsafe.Pointer(&snapName[0]), uintptr(f.rdi), n) {
		return -eFAULT
	}
	return hcall(boot.HCSnapshot, uint64(uintptr(unsafe.Pointer(&snapName[0]))), uint64(n), 0)
}

// The guest package calls the number boot names.
var _ = [1]struct{}{}[nrAmberSnapshot-boot.SysAmberSnapshot]
