package vmm

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseNetSpec(t *testing.T) {
	for _, c := range []struct {
		spec string
		want string // fmt of the result, or the error's text
	}{
		{"user", "user [] mac="},
		{"user,hostfwd=tcp:127.0.0.1:8080-:80", "user [tcp:127.0.0.1:8080-:80] mac="},
		{"user,hostfwd=tcp::8080-:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53", "user [tcp::8080-:80 udp:127.0.0.1:5353-10.0.2.15:53] mac="},
		{"user,hostfwd=127.0.0.1:8080-:80", "user [tcp:127.0.0.1:8080-:80] mac="},
		{"user,mac=52:54:00:aa:bb:cc", "user [] mac=52:54:00:aa:bb:cc"},
		{"tap=tap0", "tap tap0 mac="},
		{"tap=tap0,mac=52:54:00:aa:bb:cc", "tap tap0 mac=52:54:00:aa:bb:cc"},
		{"", "want user"},
		{"tap", "want user"},
		{"tap=", "interface name"},
		{"tap=averyveryverylongname", "interface name"},
		{"tap=tap0,hostfwd=tcp::1-:2", "unknown option"},
		{"user,hostfwd=sctp:127.0.0.1:1-:2", "neither tcp nor udp"},
		{"user,hostfwd=tcp:127.0.0.1:8080", "no '-'"},
		{"user,hostfwd=tcp:127.0.0.1:0-:80,hostfwd=tcp:127.0.0.1:0-:81", "user [tcp:127.0.0.1:0-:80 tcp:127.0.0.1:0-:81] mac="},
		{"user,hostfwd=tcp:127.0.0.1:8080-:0", "not a port number"},
		{"user,hostfwd=tcp:127.0.0.1:8080-:65536", "not a port number"},
		{"user,hostfwd=tcp:localhost:8080-:80", "not an IPv4 address"},
		{"user,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:8080-:81", "forwarded twice"},
		{"user,mac=01:00:5e:00:00:01", "multicast"},
		{"user,mac=xyz", "six hex bytes"},
		{"user,restrict=on", "unknown option"},
	} {
		s, err := ParseNetSpec(c.spec)
		got := ""
		switch {
		case err != nil:
			got = err.Error()
		case s.User:
			got = fmt.Sprintf("user %v mac=%v", s.Forwards, s.MAC)
		default:
			got = fmt.Sprintf("tap %s mac=%v", s.Tap, s.MAC)
		}
		if (err == nil && got != c.want) || (err != nil && !strings.Contains(got, c.want)) {
			t.Errorf("ParseNetSpec(%q) = %q, want %q", c.spec, got, c.want)
		}
	}
}

// OpenTap's errors say what is missing.
func TestOpenTapErrors(t *testing.T) {
	old := tunDevice
	defer func() { tunDevice = old }()
	tunDevice = "/nonexistent/tun"
	if _, err := OpenTap("tap0"); err == nil || !strings.Contains(err.Error(), "modprobe tun") {
		t.Errorf("missing device: %v", err)
	}
	if _, err := OpenTap("averyveryverylongname"); err == nil || !strings.Contains(err.Error(), "1 to 15") {
		t.Errorf("long name: %v", err)
	}
}
