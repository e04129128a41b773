package vmm

// uart16550 is the minimal 16550 at COM1 that portable guests (and Amber
// images outside our VMM) print through: transmit goes to Stdout, the line
// status always says "ready". Every access is an exit, so Amber's kernel
// uses the paravirtual console under this VMM.
type uart16550 struct {
	lcr, ier, mcr, scratch, dll, dlm byte
}

const com1 = 0x3f8

func (u *uart16550) access(vm *VM, reg uint16, out bool, data []byte) {
	if len(data) == 0 {
		return
	}
	dlab := u.lcr&0x80 != 0
	if out {
		v := data[0]
		switch {
		case reg == 0 && dlab:
			u.dll = v
		case reg == 0:
			vm.stdout.write(data[:1], vm.halt)
		case reg == 1 && dlab:
			u.dlm = v
		case reg == 1:
			u.ier = v
		case reg == 3:
			u.lcr = v
		case reg == 4:
			u.mcr = v
		case reg == 7:
			u.scratch = v
		}
		return
	}
	var v byte
	switch {
	case reg == 0 && dlab:
		v = u.dll
	case reg == 0:
		var b [1]byte
		if vm.input.read(b[:]) > 0 {
			v = b[0]
		}
	case reg == 1 && dlab:
		v = u.dlm
	case reg == 1:
		v = u.ier
	case reg == 2:
		v = 0x01 // no interrupt pending
	case reg == 3:
		v = u.lcr
	case reg == 4:
		v = u.mcr
	case reg == 5:
		v = 0x60 // transmitter empty
		if vm.input.pending() {
			v |= 0x01
		}
	case reg == 6:
		v = 0xb0
	case reg == 7:
		v = u.scratch
	}
	data[0] = v
}
