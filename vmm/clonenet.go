package vmm

import (
	"errors"
	"fmt"
	"net"
)

// The network device of a restored VM (docs/snapshots.md, "Network").
//
// A restore of a store's own snapshot continues the same VM: the
// snapshot's MAC and a backend like the recorded one (a new vmm-net
// listening on the same host ports, or the same tap device). A clone is
// another VM beside the original and its other clones, so it gets what
// must differ on one host: a fresh MAC and, for the user network's
// forwards, host ports the kernel chooses (the snapshot's are the
// original's; vmm restore prints the new ones). Either way
// RestoreConfig.Net or NetSpec (vmm restore --net) replaces the backend;
// a MAC they do not give is the snapshot's, or a fresh one for a clone.
//
// The guest learns the change from AmberInfo.Restores, which every
// restore bumps (writeRestoreInfo): the kernel makes the network
// service's next read of the NIC fail once with ENETRESET, and the
// service then reads the MAC again from the device's configuration
// space, gives it to its interface, announces it (a gratuitous ARP) and
// renews a DHCP lease. The configuration-change interrupt startRestored
// sends wakes the guest for it even if nothing else would.

// open makes the network device of a VM restored from a snapshot whose
// device r records; clone says the restore makes a clone.
func (r *netRecord) open(rc *RestoreConfig, clone bool) (*Net, error) {
	mac, err := net.ParseMAC(r.MAC)
	if err != nil {
		return nil, fmt.Errorf("the network device's MAC address %q: %v", r.MAC, err)
	}
	if clone {
		mac = RandomMAC()
	}
	if given := rc.Net; given != nil {
		n := *given
		if n.MAC == nil {
			n.MAC = mac
		}
		if n.Spec != nil {
			spec := *n.Spec
			spec.MAC = n.MAC
			n.Spec = &spec
		}
		return &n, nil
	}
	var spec NetSpec
	switch {
	case rc.NetSpec != nil:
		spec = *rc.NetSpec
		spec.Forwards = append([]HostFwd(nil), spec.Forwards...)
	case r.Unknown:
		return nil, errors.New("the snapshot's VM had a network backend the snapshot does not describe: give one (vmm restore --net)")
	case r.User:
		spec = NetSpec{User: true, Forwards: append([]HostFwd(nil), r.Forwards...)}
		if clone {
			// The snapshot's host ports are the original VM's.
			for i := range spec.Forwards {
				spec.Forwards[i].HostPort = 0
			}
		}
	case r.Tap != "":
		spec = NetSpec{Tap: r.Tap}
	default:
		return nil, errors.New("the snapshot's network device has no backend recorded: give one (vmm restore --net)")
	}
	if spec.MAC == nil {
		spec.MAC = mac
	}
	var be NetBackend
	if spec.User {
		be, err = StartUserNet(spec.MAC, spec.Forwards)
		if err == nil {
			spec.Forwards = UserNetForwards(be)
		}
	} else {
		be, err = OpenTap(spec.Tap)
	}
	if err != nil {
		if rc.NetSpec == nil {
			// The recorded backend: say how to give another.
			return nil, fmt.Errorf("starting the snapshot's network backend (%s): %w (vmm restore --net gives another)", describeBackend(spec), err)
		}
		return nil, fmt.Errorf("starting the network backend: %w", err)
	}
	return &Net{Backend: be, MAC: spec.MAC, Spec: &spec}, nil
}

// NetSpec describes the VM's network device as it runs (its backend,
// forwards with the host ports they listen on, and MAC); nil without
// one, or when its backend was given without a description.
func (vm *VM) NetSpec() *NetSpec {
	if vm.cfg.Net == nil || vm.cfg.Net.Spec == nil {
		return nil
	}
	s := *vm.cfg.Net.Spec
	s.MAC = vm.cfg.Net.MAC
	return &s
}

// describeBackend is spec's backend for a message.
func describeBackend(spec NetSpec) string {
	if spec.Tap != "" {
		return "tap=" + spec.Tap
	}
	d := "user"
	for _, f := range spec.Forwards {
		d += ",hostfwd=" + f.String()
	}
	return d
}
