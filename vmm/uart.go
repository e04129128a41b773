package vmm

import "io"

// uart16550 is the minimal 16550 at COM1 that portable guests (and Amber
// images outside our VMM) print through: transmit goes to out, receive
// comes from in, the line status always says "ready". Every access is an
// exit, so Amber's kernel uses the paravirtual console under this VMM.
type uart16550 struct {
	out io.Writer
	in  consoleInput
	uartState
}

// uartState is the UART's register file, its whole state.
type uartState struct {
	LCR, IER, MCR, Scratch, DLL, DLM byte
}

// consoleInput is the host input a device reads (vm.go's inputPump).
type consoleInput interface {
	read(b []byte) int // n > 0 bytes, 0 none yet, -1 end of input
	pending() bool
}

const (
	com1     = 0x3f8
	com1Size = 8
)

func newUART(out io.Writer, in consoleInput) *uart16550 {
	return &uart16550{out: out, in: in}
}

func (u *uart16550) SaveState() any { return u.uartState }

func (u *uart16550) RestoreState(s any) error {
	st, ok := s.(uartState)
	if !ok {
		return errStateType(u, s)
	}
	u.uartState = st
	return nil
}

func (u *uart16550) Write(reg uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	dlab := u.LCR&0x80 != 0
	v := data[0]
	switch {
	case reg == 0 && dlab:
		u.DLL = v
	case reg == 0:
		u.out.Write(data[:1])
	case reg == 1 && dlab:
		u.DLM = v
	case reg == 1:
		u.IER = v
	case reg == 3:
		u.LCR = v
	case reg == 4:
		u.MCR = v
	case reg == 7:
		u.Scratch = v
	}
}

func (u *uart16550) Read(reg uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	dlab := u.LCR&0x80 != 0
	var v byte
	switch {
	case reg == 0 && dlab:
		v = u.DLL
	case reg == 0:
		var b [1]byte
		if u.in.read(b[:]) > 0 {
			v = b[0]
		}
	case reg == 1 && dlab:
		v = u.DLM
	case reg == 1:
		v = u.IER
	case reg == 2:
		v = 0x01 // no interrupt pending
	case reg == 3:
		v = u.LCR
	case reg == 4:
		v = u.MCR
	case reg == 5:
		v = 0x60 // transmitter empty
		if u.in.pending() {
			v |= 0x01
		}
	case reg == 6:
		v = 0xb0
	case reg == 7:
		v = u.Scratch
	}
	data[0] = v
}
