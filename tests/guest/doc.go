// Package guest holds the tests that boot real images: each builds
// bin/vmm from tools/vmm and a guest program from testdata (or a module),
// boots it on KVM or, where /dev/kvm is missing, under QEMU's emulator
// (vmm run --accel tcg), and checks what the guest did. The tests of the
// VMM itself (KVM_RUN, the console, Ctrl-C) need KVM; without it they run
// on KVM nested under QEMU through tools/nestkvm (make kvmtest).
//
// The package has no code of its own: it is the tests, their helpers and
// their guest programs.
package guest
