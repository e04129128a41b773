// Package suites names the standard-library test suites Amber runs in its
// guests (make compat, and the fastest of them in make test), and the tests
// in them that cannot pass in a guest yet, with the reason.
package suites

import "strings"

// Packages is the set the compatibility goal is stated on.
var Packages = strings.Fields(`bufio bytes container/heap container/list context encoding/base64
encoding/binary encoding/csv encoding/hex encoding/json errors flag fmt hash/crc32 io io/fs
math math/big math/rand/v2 os path/filepath regexp slices sort strconv strings sync
sync/atomic text/template time unicode/utf8 archive/tar archive/zip compress/gzip
compress/flate crypto/sha256 crypto/aes crypto/ecdsa crypto/ed25519 runtime/debug net net/http`)

// Skips lists the tests that cannot pass in a guest yet, and why. They
// are skipped natively too, so both columns run the same tests.
var Skips = map[string][]string{
	"os": {
		// TCP sockets (Unix-domain sockets only so far)
		"TestLargeCopyViaNetwork", "TestSpliceFile", "TestSendFile",
		// processes: fork/exec, pidfd, os.Executable re-exec
		"TestOpenFileNonBlocking", "TestFileChdirTestlog", "TestPidfdLeak", "TestStdPipe",
		"TestReadNonblockingFd", "TestProcessWithHandleLinux", "TestKillFindProcess", "TestGetppid",
		"TestKillStartProcess", "TestStatStdin", "TestStartProcess", "TestExecutable",
		// the host's /usr/bin
		"TestChdirAndGetwd", "TestReaddirnamesOneAtATime",
	},
	"path/filepath": {"TestBug3486"},                       // walks $GOROOT/src/unicode, which is not packed
	"sync":          {"TestMutexMisuse", "TestIssue76126"}, // re-exec the test binary
	"flag":          {"TestExitCode"},                      // re-execs the test binary
	// Run with -test.v, natively and in the guest (with and without vmm
	// test --net user), these are the only failures; docs/compat.md
	// lists the tests the guest skips by itself.
	"net": {
		// network interfaces are listed through netlink (AF_NETLINK)
		"TestInterfaces", "TestInterfaceAddrs", "TestInterfaceUnicastAddrs", "TestInterfaceMulticastAddrs",
		// raw IP sockets (SOCK_RAW: listen ip4:icmp, dial ip:tcp)
		"TestIPConnLocalName", "TestIPConnRemoteName", "TestIPConnSpecificMethods",
		// sendfile answers ENOSYS: io.Copy falls back to read and write,
		// but these tests assert that sendfile moved the data
		"TestSendfile", "TestSendfileWithExactLimit", "TestSendfileWithLimitLargerThanFile",
		"TestSendfileParts", "TestSendfileSeeked",
		// its client is a child process (fork/exec)
		"TestSplice",
		// count allocations: the network service's goroutines allocate
		// in the program's own heap (a stream's pumps, a datagram's call)
		"TestTCPReadWriteAllocs", "TestAllocs",
	},
	// net/http passes whole in the guest (-test.short): no skips.
	"runtime/debug": {
		"TestPanicOnFault",   // page protections are not enforced (mappings only ever add)
		"TestSetCrashOutput", // re-execs the test binary
	},
}

// OnData are the standard-library suites make compat runs a second time
// with their temporary directories on the persistent file system: vmm
// test --disk on a fresh raw disk, so TMPDIR is /data/tmp (natively, the
// host's TMPDIR as in the first row). DataSkips are the tests that fail
// only there, skipped on both sides, with the reason (docs/kernel.md,
// "/data", says what /data does not support).
var OnData = []string{"os", "io/fs"}

// DataSkips: see OnData.
var DataSkips = map[string][]string{
	"os": {
		// no hard links on /data (link: EPERM, as a file system without them)
		"TestHardLink", "TestRootLinkFrom", "TestLongPath",
		// no FIFOs on /data (mknod: EPERM)
		"TestFifoEOF", "TestFIFONonBlockingEOF",
		// paths longer than objstore's 1,024-byte names: ENAMETOOLONG
		"TestGetwdDeep", "TestGetwdDeepWithPWDSet", "TestRemoveAllLongPath",
		// the /data service's allocations count in the program's heap
		"TestWriteStringAlloc",
		// a Unix socket bound on /data (its name must be a node of the
		// in-memory file system): bind fails with EINVAL
		"TestGetPollFDAndNetwork",
	},
}

// Fast are the quickest of Packages, and net and net/http (the network
// issue's goal; about 45 s and 100 s under QEMU TCG); make test runs them
// in the guest.
var Fast = []string{"container/heap", "container/list", "errors", "encoding/hex", "encoding/csv",
	"unicode/utf8", "crypto/aes", "io/fs", "path/filepath", "os", "net", "net/http"}

// A Suite is a third-party package whose tests make compat runs, from a
// fresh module that requires Module (pinned).
type Suite struct {
	Pkg, Module string
	Skips       []string // tests that cannot pass in a guest, with the reason beside them
	Run         string   // -run pattern, for a suite too long to run whole under QEMU
	PackMax     string   // vmm test --pack-max, for modules larger than its default
	Mem         string   // vmm test --mem, for suites that need more than its default
	OnData      bool     // the guest runs with a disk and TMPDIR on /data (vmm test --disk)
}

// ThirdParty are the third-party suites; docs/compat.md has their results.
var ThirdParty = []Suite{
	{Pkg: "github.com/itchyny/timefmt-go", Module: "github.com/itchyny/timefmt-go@v0.1.6"},
	{Pkg: "github.com/itchyny/gojq", Module: "github.com/itchyny/gojq@v0.12.17"},
	{Pkg: "github.com/itchyny/gojq/cli", Module: "github.com/itchyny/gojq@v0.12.17"},
	{Pkg: "github.com/pelletier/go-toml/v2", Module: "github.com/pelletier/go-toml/v2@v2.2.4"},
	{Pkg: "github.com/BurntSushi/toml", Module: "github.com/BurntSushi/toml@v1.5.0"},
	{Pkg: "gopkg.in/yaml.v3", Module: "gopkg.in/yaml.v3@v3.0.1"},
	{Pkg: "github.com/hashicorp/hcl/v2/hclsyntax", Module: "github.com/hashicorp/hcl/v2@v2.24.0"},
	// Its tests read ../testdata; all 2100 files take over 7 minutes under
	// QEMU (78 s natively), so the std* ones.
	{Pkg: "github.com/google/go-jsonnet/linter", Module: "github.com/google/go-jsonnet@v0.21.0",
		Run: `^TestLinter$/^\.\.$/^testdata$/^std`},
	{Pkg: "go.starlark.net/starlark", Module: "go.starlark.net@v0.0.0-20250701195324-d457b4515e0e",
		Skips: []string{
			"TestIntFallback", // re-runs itself through /bin/sh (fork/exec)
			"TestProfile",     // runs go tool pprof (fork/exec)
		}},
	{Pkg: "github.com/dop251/goja", Module: "github.com/dop251/goja@v0.0.0-20250630131328-58d95d85e994"},
	{Pkg: "github.com/yuin/goldmark", Module: "github.com/yuin/goldmark@v1.7.12"},
	{Pkg: "github.com/golang/snappy", Module: "github.com/golang/snappy@v1.0.0"},
	{Pkg: "github.com/ulikunitz/xz", Module: "github.com/ulikunitz/xz@v0.5.12"},
	{Pkg: "github.com/andybalholm/brotli", Module: "github.com/andybalholm/brotli@v1.2.0"},
	{Pkg: "github.com/klauspost/compress/huff0", Module: "github.com/klauspost/compress@v1.18.0", PackMax: "64M"}, // reads ../testdata
	{Pkg: "github.com/klauspost/compress/s2", Module: "github.com/klauspost/compress@v1.18.0", PackMax: "64M"},
	{Pkg: "github.com/klauspost/compress/zstd", Module: "github.com/klauspost/compress@v1.18.0", PackMax: "64M", Mem: "2G"},
	// The whole suite runs for over 8 minutes natively here (TCL tests and
	// more); these cover queries, types, time, concurrency and in-memory
	// and file databases.
	{Pkg: "modernc.org/sqlite", Module: "modernc.org/sqlite@v1.38.0", Mem: "1G",
		Run: "^Test(Scalar|Blob|MemDB|ConcurrentGoroutines|SingleConn|NoRows|Columns|ColumnTypes|Time|TimeScan|Binding|InMemory|BeginMode|Collation|NullBinding|NamedParameters)$",
		Skips: []string{
			"TestConcurrentGoroutines", // re-runs itself with go test -race (fork/exec)
		}},
}
