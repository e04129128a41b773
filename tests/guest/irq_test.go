package guest

import (
	"testing"

	"github.com/amberos/amber/tools/guestrun"
)

// Device interrupts nest safely: the program raises the kernel's echo
// vector (boot.IRQEchoVector) 60,000 times from three goroutines while
// others make system calls, block on a pipe, sleep and collect garbage;
// each raise is answered by a second interrupt that arrives between the
// handler's EOI and its IRETQ. Every interrupt must be counted once and
// the program's work come out right. With device vectors on IST3, the
// second delivery started over on the frame in use and the program died
// (a split stack overflow in syscallReturn, under TCG at once).
func TestDeviceInterruptsNest(t *testing.T) {
	r := runGuest(t, "./testdata/irqstorm", guestrun.Config{Args: []string{"-n", "20000", "-raisers", "3"}})
	expect(t, r, 0, "irqstorm ok: 120000 echo interrupts")
}
