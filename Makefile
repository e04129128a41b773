# Amber: `make` builds bin/vmm, `make run` boots the default app,
# `make test` runs every test, `make bench` the benchmarks.

GO ?= go
GO_MIN := 1.26

.PHONY: all vmm run test bench check-go clean

all: vmm

check-go:
	@command -v $(GO) >/dev/null 2>&1 || { echo "make: the go command is missing: install Go $(GO_MIN) or newer (https://go.dev/dl) and put it on PATH" >&2; exit 1; }
	@v=$$($(GO) env GOVERSION | sed 's/^go//'); \
	 printf '%s\n%s\n' "$(GO_MIN)" "$$v" | sort -V -C || { echo "make: Go $$v is too old: Amber needs Go $(GO_MIN) or newer" >&2; exit 1; }

vmm: check-go
	$(GO) build -o bin/vmm ./tools/vmm

run: vmm
	bin/vmm build -o bin/hello.img ./apps/hello
	bin/vmm run bin/hello.img

test: check-go
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "make: files need gofmt:" >&2; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

bench: vmm
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./tools/vmm/
	$(GO) test -run '^$$' -bench . -count 5 -timeout 60m ./objstore/...

clean:
	rm -rf bin
