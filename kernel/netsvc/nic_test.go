package netsvc

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseNetConfig(t *testing.T) {
	c, err := ParseNetConfig("amber.ip=10.0.2.15/24 amber.gw=10.0.2.2 amber.dns=10.0.2.3,1.1.1.1 amber.ip6=fec0::15/64 amber.hostname=vm")
	if err != nil {
		t.Fatal(err)
	}
	want := NetConfig{Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
		DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("1.1.1.1")}, Addr6: netip.MustParsePrefix("fec0::15/64"), Hostname: "vm"}
	if c.Addr != want.Addr || c.Gateway != want.Gateway || !slices.Equal(c.DNS, want.DNS) || c.Addr6 != want.Addr6 || c.Hostname != want.Hostname || c.DHCP {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if c, err := ParseNetConfig("amber.ip=dhcp"); err != nil || !c.DHCP {
		t.Errorf("dhcp: %+v, %v", c, err)
	}
	if c, err := ParseNetConfig(""); err != nil || c.Addr.IsValid() || c.DHCP {
		t.Errorf("empty: %+v, %v", c, err)
	}
	for _, bad := range []string{"amber.ip=10.0.2.15", "amber.ip=fec0::1/64", "amber.gw=::1", "amber.dns=10.0.2.3,x", "amber.ip6=10.0.0.1/8", "amber.mtu=9000"} {
		if _, err := ParseNetConfig(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
