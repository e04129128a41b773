package vmm

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// BenchmarkKVMCost: what the KVM steps of a restore cost by themselves,
// with 256 MiB and 2 GiB of guest memory, medians of 15: opening
// /dev/kvm and KVM_CREATE_VM, mapping the memory, registering it as a
// slot without and with the dirty log, the split irqchip, creating the
// vCPU, and tearing the VM down. It tells which of a restore's costs are
// KVM's (and grow with memory size), as opposed to the VMM's own. The
// host's KVM MMU parameters are logged: with the TDP MMU, KVM keeps no
// per-page reverse map of a slot.
func BenchmarkKVMCost(b *testing.B) {
	needKVM(b)
	for _, p := range []string{"/sys/module/kvm/parameters/tdp_mmu", "/sys/module/kvm_amd/parameters/npt", "/sys/module/kvm_intel/parameters/ept"} {
		if v, err := os.ReadFile(p); err == nil {
			b.Logf("%s = %s", p, strings.TrimSpace(string(v)))
		}
	}
	const runs = 15
	for _, mib := range []uint64{256, 2048} {
		steps := map[string][]time.Duration{}
		var order []string
		for r := 0; r < runs; r++ {
			for _, flags := range []uint32{0, memLogDirtyPages} {
				slot := "memory slot"
				if flags != 0 {
					slot = "memory slot, dirty log"
				}
				last := time.Now()
				mark := func(name string) {
					now := time.Now()
					if r == 0 && !slices.Contains(order, name) {
						order = append(order, name)
					}
					steps[name] = append(steps[name], now.Sub(last))
					last = now
				}
				vm := &VM{}
				var err error
				if vm.kvmFd, err = openKVM(); err != nil {
					b.Fatal(err)
				}
				if vm.vmFd, err = kvm.CreateVM(vm.kvmFd); err != nil {
					b.Fatal(err)
				}
				mark("create VM")
				if vm.mem, err = newGuestMemory(mib << 20); err != nil {
					b.Fatal(err)
				}
				mark("mmap memory")
				if err := vm.setMemoryRegion(flags); err != nil {
					b.Fatal(err)
				}
				mark(slot)
				if err := enableSplitIRQChip(vm.vmFd); err != nil {
					b.Fatal(err)
				}
				mark("split irqchip")
				if vm.vcpu, err = newVCPU(vm.kvmFd, vm.vmFd, 0); err != nil {
					b.Fatal(err)
				}
				mark("vCPU")
				vm.vcpu.close()
				unix.Close(int(vm.vmFd))
				unix.Close(int(vm.kvmFd))
				vm.mem.close()
				mark("teardown")
			}
		}
		var line []string
		for _, n := range order {
			s := slices.Clone(steps[n])
			slices.Sort(s)
			line = append(line, n+" "+s[len(s)/2].String())
		}
		b.Logf("%d MiB: %s", mib, strings.Join(line, ", "))
	}
}
