// Package uart16550 drives a 16550 UART by port I/O: the portable console
// of an Amber guest outside Amber's VMM (QEMU, Firecracker, Cloud
// Hypervisor), and the device the VMM also models. It is core code: every
// function is //go:nosplit and allocates nothing, so the kernel can print
// before the Go runtime exists and from its trap handlers.
package uart16550

import "github.com/amberos/amber/drivers/portio"

// COM1 is the first serial port's I/O base.
const COM1 = 0x3f8

// Registers (offsets from the base) and line-status bits.
const (
	regData = 0
	regLSR  = 5
	lsrData = 0x01 // a received byte is waiting
	lsrTHRE = 0x20 // the transmit holding register is empty
)

// Write sends p, waiting for the transmitter before each byte.
//
//go:nosplit
func Write(base uint16, p []byte) {
	for i := 0; i < len(p); i++ {
		for portio.In8(base+regLSR)&lsrTHRE == 0 {
		}
		portio.Out8(base+regData, p[i])
	}
}

// Read moves the bytes already received into p and returns their number;
// it does not wait.
//
//go:nosplit
func Read(base uint16, p []byte) int {
	n := 0
	for n < len(p) && Ready(base) {
		p[n] = portio.In8(base + regData)
		n++
	}
	return n
}

// Ready reports whether a received byte is waiting.
//
//go:nosplit
func Ready(base uint16) bool {
	return portio.In8(base+regLSR)&lsrData != 0
}
