// Package portio is x86 port I/O for guest code that runs before the Go
// runtime or in trap handlers: the functions are plain assembly leaves,
// safe to call from //go:nosplit code. The whole guest runs at CPL3 with
// IOPL 3, so IN and OUT work there.
package portio

// Out8 writes v to port.
func Out8(port uint16, v uint8)

// In8 reads a byte from port.
func In8(port uint16) uint8
