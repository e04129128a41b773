# Amber: `make` builds bin/vmm, `make run` boots the default app,
# `make test` runs every test, `make bench` the benchmarks.
# Without /dev/kvm, `make test` ends with the VMM's KVM-only tests on KVM
# nested under QEMU's emulator (`make kvmtest` runs just that stage).

GO ?= go
GO_MIN := 1.26

.PHONY: all vmm run test kvmtest bench stress stress-data compat check-go check-qemu clean

all: vmm

check-go:
	@command -v $(GO) >/dev/null 2>&1 || { echo "make: the go command is missing: install Go $(GO_MIN) or newer (https://go.dev/dl) and put it on PATH" >&2; exit 1; }
	@v=$$($(GO) env GOVERSION | sed 's/^go//'); \
	 printf '%s\n%s\n' "$(GO_MIN)" "$$v" | sort -V -C || { echo "make: Go $$v is too old: Amber needs Go $(GO_MIN) or newer" >&2; exit 1; }

# vmm-net is the user-mode network of vmm run --net user, a process of its
# own (vmm/netproc.go); vmm looks for it next to itself.
# vmm is linked statically (CGO_ENABLED=0: only the net package's resolver
# would use cgo): no dynamic loader or libc at its start, 1.3 MiB less
# resident memory. Its Go heap gets no transparent huge pages (GODEBUG
# disablethp=1 as the binary's default: the go command does not take it
# in //go:debug, the linker sets it): on a host in THP mode "always" the
# heap's first chunk was a 2 MiB page before vmm's code ran, for a heap of
# ~1 MiB (docs/benchmarks.md, issue 14). vmm starts vmm-net with the same.
VMM_LDFLAGS := -X=runtime.godebugDefault=disablethp=1
vmm: check-go
	CGO_ENABLED=0 $(GO) build -ldflags=$(VMM_LDFLAGS) -o bin/vmm ./tools/vmm
	$(GO) build -ldflags=$(VMM_LDFLAGS) -o bin/vmm-net ./tools/vmmnet

# Without a usable /dev/kvm the image boots under QEMU's emulator instead.
run: vmm
	bin/vmm build -o bin/hello.img ./apps/hello
	@if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then \
	  echo bin/vmm run bin/hello.img; bin/vmm run bin/hello.img; \
	else \
	  echo "make: /dev/kvm is missing or not usable here: booting under QEMU's emulator (vmm run --accel tcg)"; \
	  $(MAKE) --no-print-directory check-qemu && bin/vmm run --accel tcg bin/hello.img; \
	fi

# The QEMU smoke tests need qemu-system-x86_64 (Debian: qemu-system-x86).
check-qemu:
	@command -v qemu-system-x86_64 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing qemu-system-x86 for the QEMU smoke tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; \
	  else \
	    echo "make: qemu-system-x86_64 is missing: install it (Debian/Ubuntu: sudo apt-get install qemu-system-x86) for the QEMU smoke tests" >&2; exit 1; \
	  fi; }

# The nested KVM stage (kvmtest) runs whatever the other tests gave; either
# failing fails the target.
test: check-go check-qemu
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "make: files need gofmt:" >&2; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/tools/nestkvm$$'); st=$$?; \
	$(MAKE) --no-print-directory kvmtest && exit $$st

# The tests of the VMM itself need KVM. Where /dev/kvm is missing they run
# on KVM nested under QEMU's emulator (tools/nestkvm: the first run
# downloads Debian's kernel and busybox, ~70 MB, with apt-get), verbose so
# the per-test times show; with /dev/kvm they ran directly above.
kvmtest: check-go check-qemu
	$(GO) test -count=1 -v -timeout 45m ./tools/nestkvm

# Each benchmark compares against a baseline taken in the same run (a
# native process, QEMU, a plain file, bbolt) and reports medians; see
# docs/benchmarks.md. The benchmarks that need KVM run nested where
# /dev/kvm is missing.
bench: vmm check-qemu
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./tests/guest/
	test -e /dev/kvm || $(GO) run ./tools/nestkvm -timeout 90m -bench 'KVM$$|^Benchmark(HelloWall|BootToMain|Getpid|Restore|RestoreHTTP|SnapshotPause|CloneDensity)$$'
	$(GO) test -run '^$$' -bench . -count 5 -timeout 60m ./objstore/...
	$(GO) run ./tools/compat -set std

# Guest stress: every stress program booted STRESS_RUNS times (default
# 200) beside a CPU hog per core, on KVM or, without /dev/kvm, under QEMU
# TCG. Flags: go run ./tools/stress -help.
STRESS_RUNS ?= 200
stress: vmm
	$(GO) run ./tools/stress -runs $(STRESS_RUNS) -parallel 2 -logs bin/stress-logs $(STRESS_FLAGS)

# Crash safety of /data: DATA_KILLS (default 1000) SIGKILLs of QEMU at
# random moments while a guest writes and fsyncs files; every fsynced
# file must survive and the store pass fsck after each (make test: 20).
DATA_KILLS ?= 1000
stress-data: vmm check-qemu
	DATAFS_KILLS=$(DATA_KILLS) $(GO) test -count=1 -timeout 0 -run '^TestDataCrashSafety$$' -v ./tests/guest/

# The standard library's test suites, real third-party programs and
# third-party test suites, in the guest and natively, as tables
# (docs/compat.md).
compat: vmm
	$(GO) run ./tools/compat -v

clean:
	rm -rf bin
