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
compress/flate crypto/sha256 crypto/aes crypto/ecdsa crypto/ed25519 runtime/debug net`)

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
	"net": {
		// network interfaces are listed through netlink (AF_NETLINK)
		"TestInterfaces", "TestInterfaceAddrs", "TestInterfaceUnicastAddrs", "TestInterfaceMulticastAddrs",
		// raw IP sockets (SOCK_RAW)
		"TestIPConnLocalName", "TestIPConnRemoteName", "TestIPConnSpecificMethods",
		// sendfile answers ENOSYS, splice's client is a child process
		"TestSendfile", "TestSendfileWithExactLimit", "TestSendfileWithLimitLargerThanFile",
		"TestSendfileParts", "TestSendfileSeeked", "TestSplice",
		// the network service allocates in the program's own heap
		"TestTCPReadWriteAllocs", "TestUDPZeroByteBuffer", "TestAllocs",
		// descriptor passing (SCM_RIGHTS)
		"TestUnixConnReadMsgUnixSCMRightsCloseOnExec",
		// a reset connection reads as end of file, not ECONNRESET
		"TestNotTemporaryRead",
	},
	"runtime/debug": {
		"TestPanicOnFault",   // page protections are not enforced (mappings only ever add)
		"TestSetCrashOutput", // re-execs the test binary
	},
}

// Fast are the quickest of Packages; make test runs them in the guest.
var Fast = []string{"container/heap", "container/list", "errors", "encoding/hex", "encoding/csv",
	"unicode/utf8", "crypto/aes", "io/fs", "path/filepath", "os"}
