package kernel

import (
	"testing"
	"unsafe"
)

func TestParseVirtioMMIO(t *testing.T) {
	for _, c := range []struct {
		in         string
		size, base uintptr
		irq        uint32
		ok         bool
	}{
		{"512@0xfeb00e00:12", 512, 0xfeb00e00, 12, true},
		{"4K@0xd0000000:5:3", 4096, 0xd0000000, 5, true},
		{"1k@4096:0", 1024, 4096, 0, true},
		{"0x200@0XFEB00000:24", 512, 0xfeb00000, 24, true},
		{"1M@010:7", 1 << 20, 8, 7, true},
		{"512@0xfeb00e00", 0, 0, 0, false},
		{"512@0xfeb00e00:", 0, 0, 0, false},
		{"@0xfeb00e00:12", 0, 0, 0, false},
		{"512@0xfeb00e00:12x", 0, 0, 0, false},
		{"512@0xfeb00e00:70000", 0, 0, 0, false},
		{"512@0x1ffffffffffffffff:1", 0, 0, 0, false},
		{"512x0xfeb00e00:12", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		size, base, irq, ok := parseVirtioMMIO([]byte(c.in))
		if ok != c.ok || ok && (size != c.size || base != c.base || irq != c.irq) {
			t.Errorf("%q: %d %#x %d %v; want %d %#x %d %v", c.in, size, base, irq, ok, c.size, c.base, c.irq, c.ok)
		}
	}
}

// QEMU appends its virtio_mmio.device= entries after the program's
// arguments: they are the kernel's and stay out of argv, unless a real
// argument follows them.
func TestProcessStackDropsQEMUDevices(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want []string
	}{
		{"amber.argv0=p -- a virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11", []string{"p", "a"}},
		{"amber.argv0=p -- virtio_mmio.device=512@0xfeb00e00:12 b", []string{"p", "virtio_mmio.device=512@0xfeb00e00:12", "b"}},
		{"amber.argv0=p virtio_mmio.device=512@0xfeb00e00:12", []string{"p"}},
	} {
		buf := make([]uint64, 64<<10/8)
		top := uintptr(unsafe.Pointer(&buf[len(buf)-1])) + 8
		sp := layoutProcessStack([]byte(c.cmd), top, 1, 2)
		argc := *u64at(sp)
		var args []string
		for i := uintptr(0); i < uintptr(argc); i++ {
			args = append(args, cString(*u64at(sp + 8 + 8*i)))
		}
		if len(args) != len(c.want) {
			t.Errorf("%q: argv %q, want %q", c.cmd, args, c.want)
			continue
		}
		for i := range args {
			if args[i] != c.want[i] {
				t.Errorf("%q: argv %q, want %q", c.cmd, args, c.want)
				break
			}
		}
	}
}
