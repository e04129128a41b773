package vmm

// debugExit is QEMU's isa-debug-exit at port 0xf4, for images that were
// told to use it: a write ends the VM with the byte written as the
// status.
type debugExit struct {
	exit func(status int)
}

const (
	debugExitPort = 0xf4
	debugExitSize = 1
)

func (d debugExit) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

func (d debugExit) Write(_ uint64, data []byte) {
	if len(data) >= 1 {
		d.exit(int(data[0]))
	}
}
