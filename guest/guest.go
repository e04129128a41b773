// Package guest is what a program running on Amber can ask of the VM it
// runs in. It builds and runs anywhere; outside Amber its calls fail with
// ErrNotAmber.
package guest

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/amberos/amber/boot"
)

// ErrNotAmber is the error of a call that only Amber's VMM serves, made
// by a program running natively (or under another hypervisor).
var ErrNotAmber = errors.New("not running on Amber's VMM")

// ErrExists is the error of Snapshot for a name the store already holds.
var ErrExists = errors.New("a snapshot of that name exists")

// ErrNotSupported is the error of Snapshot in a VM that cannot be
// snapshotted: its disk is not one writable store (vmm run --disk
// vm.store).
var ErrNotSupported = errors.New("this VM cannot be snapshotted (it needs one writable store as its disk: vmm run --disk vm.store)")

// Snapshot saves the whole VM as snapshot name in the store that is its
// disk, for "initialise once, serve many": the call returns twice, once
// in this VM (restored false) once the snapshot is committed, and again
// in every VM restored from it (restored true), where the wall clock is
// the host's and the random sources are reseeded. Open TCP connections do
// not survive a restore.
//
// The VM stands still while the snapshot is taken: every goroutine stops
// at once, as for a snapshot taken from outside (vmm snapshot).
func Snapshot(name string) (restored bool, err error) {
	if name == "" || len(name) > 128 {
		return false, fmt.Errorf("guest.Snapshot %q: a name has 1 to 128 characters", name)
	}
	r, errno := snapshotCall(name)
	switch errno {
	case 0:
		return r == 1, nil
	case syscall.ENOSYS:
		err = ErrNotAmber
	case syscall.EINVAL:
		err = errors.New("not a snapshot name (letters, digits, '.', '-', '_', not starting with '.')")
	case syscall.EEXIST:
		err = ErrExists
	case syscall.EOPNOTSUPP:
		err = ErrNotSupported
	case syscall.EIO:
		err = errors.New("the VMM failed to take it (its stderr says why)")
	default:
		err = errno
	}
	return false, fmt.Errorf("guest.Snapshot %q: %w", name, err)
}

// sysSnapshot is the system call's number, in Amber and in no Linux.
const sysSnapshot = boot.SysAmberSnapshot
