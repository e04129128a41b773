package main

// Unit tests of the CLI's own parsing; the tests that run vmm and boot
// guests are in tests/guest.

import (
	"strings"
	"testing"
)

// --mem 17179869186G wrapped around to 2 GiB and booted (issue 8).
func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"128M", 128 << 20, ""},
		{"1G", 1 << 30, ""},
		{"512MiB", 512 << 20, ""},
		{"64", 64 << 20, ""},
		{"4096K", 4 << 20, ""},
		{"17179869186G", 0, "too large"},
		{"17592186044416M", 0, "too large"},
		{"18446744073709551615K", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
		{"0", 0, "invalid size"},
		{"-1G", 0, "invalid size"},
		{"lots", 0, "invalid size"},
	} {
		got, err := parseSize(c.in)
		if c.err == "" && (err != nil || got != c.want) || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("parseSize(%q) = %d, %v; want %d, %q", c.in, got, err, c.want, c.err)
		}
	}
}
