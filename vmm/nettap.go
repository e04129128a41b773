package vmm

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A host tap device as the network: each read of the device is one
// Ethernet frame for the guest, each write one from it. Opened without
// IFF_VNET_HDR: the device completes the guest's checksums itself
// (virtionet.go), so the host sees ordinary frames and the tap needs no
// offload set-up; the price is that the host's frames carry full
// checksums, which the guest verifies.

// tunDevice is the tun/tap clone device (a variable for tests).
var tunDevice = "/dev/net/tun"

type tapNet struct {
	f    *os.File
	mtu  int
	once sync.Once
}

// OpenTap attaches to the tap interface name, creating it if it does not
// exist: that takes CAP_NET_ADMIN, and so does attaching to one that
// belongs to another user (ip tuntap add NAME mode tap user $USER makes
// one a user may attach to without it).
func OpenTap(name string) (NetBackend, error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap=%q: an interface name has 1 to %d characters", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("tap=%s: %s does not exist (load the tun module: modprobe tun)", name, tunDevice)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return nil, fmt.Errorf("tap=%s: no permission to open %s", name, tunDevice)
	case err != nil:
		return nil, fmt.Errorf("tap=%s: opening %s: %w", name, tunDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap=%s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("tap=%s: attaching needs CAP_NET_ADMIN, or a tap device your user owns (sudo ip tuntap add %s mode tap user $USER)", name, name)
		}
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("tap=%s: the device is in use by another process, or is a tun (not tap) device", name)
		}
		return nil, fmt.Errorf("tap=%s: TUNSETIFF: %w", name, err)
	}
	t := &tapNet{f: os.NewFile(uintptr(fd), "tap:"+name), mtu: netDefaultMTU}
	if mtu, err := interfaceMTU(name); err == nil && mtu >= 68 && mtu <= netMaxMTU {
		t.mtu = mtu
	}
	return t, nil
}

// interfaceMTU reads the host interface's MTU (SIOCGIFMTU).
func interfaceMTU(name string) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

func (t *tapNet) MTU() int       { return t.mtu }
func (t *tapNet) Verified() bool { return false }

func (t *tapNet) Send(frame []byte) error {
	_, err := t.f.Write(frame)
	return err
}

func (t *tapNet) Recv(buf []byte) (int, error) { return t.f.Read(buf) }

// Close ends a Recv in progress (the file is in Go's poller); a second
// Close does nothing.
func (t *tapNet) Close() error {
	var err error
	t.once.Do(func() { err = t.f.Close() })
	return err
}
