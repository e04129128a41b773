package kernel

import (
	"sync/atomic"

	"github.com/amberos/amber/boot"
)

// The network interface after a restore from a snapshot. The VMM bumps
// AmberInfo.Restores on every restore, and may have given the device
// another MAC (a clone: docs/snapshots.md, "Network"): the driver's copy,
// read at probe, is then stale, and the network service's interface
// still answers ARP with the snapshot's address. So the NIC descriptor's
// next read after a restore fails once with ENETRESET, before any frame
// received since is handed over: the service (kernel/netsvc/nic.go)
// reads the MAC again with the info ioctl, which re-reads it from the
// device's configuration space, and then goes on reading. The
// descriptor is readable while that is pending (its edge counter moves
// with the restore count), and netWake wakes the pollers once per
// restore, so a reader parked in the netpoller sees it
// (the VMM sends a configuration-change interrupt on restore, which ends
// an idle).

// eNETRESET is Linux's ENETRESET: "connection aborted by network".
const eNETRESET = 102

var (
	vnetMACRestores  uint64 // Restores when vnet.MAC was read
	vnetReadRestores uint64 // Restores the descriptor's reader was told of (or found at open)
	vnetWakeRestores uint64 // Restores netWake has woken the pollers for
)

// restores returns AmberInfo.Restores (0 under other loaders).
//
//go:nosplit
func restores() uint64 {
	if amberInfo == 0 {
		return 0
	}
	return atomic.LoadUint64(&(*boot.AmberInfo)(ptr(amberInfo)).Restores)
}

// netRestoreInit records the restore count the probe's MAC belongs to.
//
//go:nosplit
func netRestoreInit() {
	r := restores()
	vnetMACRestores, vnetReadRestores, vnetWakeRestores = r, r, r
}

// netRefreshMAC reads the MAC from the device again if the VM was
// restored since it was read.
//
//go:nosplit
func netRefreshMAC() {
	r := restores()
	if r == vnetMACRestores || !vnet.HasMAC {
		return
	}
	vnetMACRestores = r
	lo, hi := vnet.T.Config32(0), vnet.T.Config32(4)
	for i := 0; i < 4; i++ {
		vnet.MAC[i] = byte(lo >> (8 * i))
	}
	vnet.MAC[4], vnet.MAC[5] = byte(hi), byte(hi>>8)
}

// netRestorePending reports that the descriptor's reader has not yet
// been told of the last restore.
//
//go:nosplit
func netRestorePending() bool { return vnetOpen && restores() != vnetReadRestores }

// netTakeRestore consumes a pending restore for the reader: true if
// there was one (its read then fails with ENETRESET).
//
//go:nosplit
func netTakeRestore() bool {
	r := restores()
	if r == vnetReadRestores {
		return false
	}
	vnetReadRestores = r
	netRefreshMAC()
	return true
}

// netRestoreWake reports, once per restore, that the pollers should be
// woken for it.
//
//go:nosplit
func netRestoreWake() bool {
	r := restores()
	if r == vnetWakeRestores {
		return false
	}
	vnetWakeRestores = r
	return vnetOpen
}
