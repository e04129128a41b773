// Command metricsio makes device requests on command, for the control
// API's metrics test: it prints "ready", then serves lines on stdin,
// answering each with "done CMD" once its requests are complete:
//
//	read N   N reads of one 4 KiB block each from /dev/vda
//	write N  N writes of one 4 KiB block each to /dev/vda, then fsync
//	udp N    N UDP datagrams to 10.0.2.2:9 (the user network's host)
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

func main() {
	disk, err := os.OpenFile("/dev/vda", os.O_RDWR, 0)
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	r := bufio.NewReader(os.Stdin)
	buf := make([]byte, 4096)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // the test closed stdin
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			fail(fmt.Errorf("bad command %q", line))
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			fail(err)
		}
		switch f[0] {
		case "read":
			for i := range n {
				if _, err := disk.ReadAt(buf, int64(i)*4096); err != nil {
					fail(err)
				}
			}
		case "write":
			for i := range n {
				buf[0] = byte(i)
				if _, err := disk.WriteAt(buf, int64(i)*4096); err != nil {
					fail(err)
				}
			}
			if err := disk.Sync(); err != nil {
				fail(err)
			}
		case "udp":
			c, err := net.Dial("udp", "10.0.2.2:9")
			if err != nil {
				fail(err)
			}
			for range n {
				if _, err := c.Write([]byte("metrics")); err != nil {
					fail(err)
				}
			}
			c.Close()
		default:
			fail(fmt.Errorf("unknown command %q", f[0]))
		}
		fmt.Println("done", f[0])
	}
}

func fail(err error) {
	fmt.Println("metricsio:", err)
	os.Exit(1)
}
