package vmm

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// QEMU's user-network addresses, which the guest gets on its command line
// (UserNetCmdline) or by DHCP.
const (
	UserNetSubnet  = "10.0.2.0/24"
	UserNetGateway = "10.0.2.2" // the gateway, and the host's 127.0.0.1 through NAT
	UserNetDNS     = "10.0.2.3" // forwarded to the host's resolver
	UserNetGuest   = "10.0.2.15"
	// UserNetMTU is the user network's MTU: large, so TCP moves 64 KiB
	// segments without segmentation offloads (the stack on the host side
	// segments to the guest's MSS, which is the guest's choice).
	UserNetMTU = 65520
)

// String is f in QEMU's spelling.
func (f HostFwd) String() string {
	proto := "tcp"
	if f.UDP {
		proto = "udp"
	}
	return fmt.Sprintf("%s:%s:%d-%s:%d", proto, f.HostAddr, f.HostPort, f.GuestAddr, f.GuestPort)
}

// UserNetCmdline is what the guest is told of the user network: its
// address, gateway and DNS server (kernel options).
func UserNetCmdline() []string {
	return []string{"amber.ip=" + UserNetGuest + "/24", "amber.gw=" + UserNetGateway, "amber.dns=" + UserNetDNS}
}

// HostFwd is one port forward from the host to the guest (QEMU's
// hostfwd=PROTO:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT).
type HostFwd struct {
	UDP      bool
	HostAddr string // "" is every address (QEMU's default)
	// HostPort 0 asks for a free port the host's kernel chooses (bind
	// to port 0): the network backend reports the port it got
	// (UserNetForwards), and vmm prints it.
	HostPort  int
	GuestAddr string // "" is the guest's address, 10.0.2.15
	GuestPort int
}

// NetSpec is a parsed --net option.
type NetSpec struct {
	User     bool
	Forwards []HostFwd // User only
	Tap      string    // tap=NAME
	MAC      net.HardwareAddr
}

// ParseNetSpec reads the --net option: user[,hostfwd=...][,mac=...] (QEMU's
// -netdev user spelling, several hostfwd allowed; host port 0 is a free
// port the kernel chooses) or tap=NAME[,mac=...].
func ParseNetSpec(spec string) (NetSpec, error) {
	var s NetSpec
	parts := strings.Split(spec, ",")
	switch {
	case parts[0] == "user":
		s.User = true
	case strings.HasPrefix(parts[0], "tap="):
		s.Tap = strings.TrimPrefix(parts[0], "tap=")
		if s.Tap == "" || len(s.Tap) >= 16 || strings.ContainsAny(s.Tap, "/ \t") {
			return s, fmt.Errorf("%q: tap=NAME wants an interface name of 1 to 15 characters", parts[0])
		}
	default:
		return s, fmt.Errorf("%q: want user[,hostfwd=tcp:HOSTADDR:PORT-:GUESTPORT,...] or tap=NAME", spec)
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch {
		case k == "hostfwd" && s.User:
			f, err := parseHostFwd(v)
			if err != nil {
				return s, err
			}
			s.Forwards = append(s.Forwards, f)
		case k == "mac":
			m, err := net.ParseMAC(v)
			if err != nil || len(m) != 6 {
				return s, fmt.Errorf("mac=%s: want six hex bytes like 52:54:00:12:34:56", v)
			}
			if m[0]&1 != 0 {
				return s, fmt.Errorf("mac=%s is a multicast address", v)
			}
			s.MAC = m
		default:
			return s, fmt.Errorf("%q: unknown option %q (user takes hostfwd= and mac=, tap= takes mac=)", spec, p)
		}
	}
	seen := map[string]bool{}
	for _, f := range s.Forwards {
		if f.HostPort == 0 {
			continue // each gets a port of its own
		}
		k := fmt.Sprintf("%v/%s/%d", f.UDP, f.HostAddr, f.HostPort)
		if seen[k] {
			return s, fmt.Errorf("hostfwd: host port %d forwarded twice", f.HostPort)
		}
		seen[k] = true
	}
	return s, nil
}

// parseHostFwd reads [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT.
func parseHostFwd(v string) (HostFwd, error) {
	var f HostFwd
	bad := func(why string) (HostFwd, error) {
		return f, fmt.Errorf("hostfwd=%s: %s (want tcp:HOSTADDR:HOSTPORT-:GUESTPORT, e.g. tcp:127.0.0.1:8080-:80)", v, why)
	}
	rest := v
	if p, r, ok := strings.Cut(v, ":"); ok && (p == "tcp" || p == "udp") {
		f.UDP, rest = p == "udp", r
	} else if ok && p != "" && strings.Contains(r, "-") && !strings.Contains(p, ".") {
		return bad("protocol " + p + " is neither tcp nor udp")
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return bad("no '-' between the host and guest sides")
	}
	port := func(s string, zero bool) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && (n > 0 || zero && n == 0) && n < 65536
	}
	addr := func(s string) (string, bool) {
		if s == "" {
			return "", true
		}
		ip := net.ParseIP(s)
		return s, ip != nil && ip.To4() != nil
	}
	ha, hp, ok := strings.Cut(host, ":")
	if !ok {
		return bad("the host side is not HOSTADDR:PORT")
	}
	if f.HostAddr, ok = addr(ha); !ok {
		return bad("host address " + ha + " is not an IPv4 address")
	}
	if f.HostPort, ok = port(hp, true); !ok {
		return bad("host port " + hp + " is not a port number")
	}
	ga, gp, ok := strings.Cut(guest, ":")
	if !ok {
		ga, gp = "", guest
	}
	if f.GuestAddr, ok = addr(ga); !ok {
		return bad("guest address " + ga + " is not an IPv4 address")
	}
	if f.GuestPort, ok = port(gp, false); !ok {
		return bad("guest port " + gp + " is not a port number")
	}
	return f, nil
}
