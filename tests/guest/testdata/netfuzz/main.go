// Command netfuzz is a UDP echo server on port 7 for TestNetBadFrames: the
// host sends it malformed frames between echo probes; "quit" ends it.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	c, err := net.ListenPacket("udp4", ":7")
	if err != nil {
		fmt.Println("netfuzz:", err)
		os.Exit(1)
	}
	fmt.Println("netfuzz: ready")
	buf := make([]byte, 2048)
	for {
		n, a, err := c.ReadFrom(buf)
		if err != nil {
			fmt.Println("netfuzz:", err)
			os.Exit(1)
		}
		if string(buf[:n]) == "quit" {
			fmt.Println("netfuzz: done")
			os.Exit(0)
		}
		c.WriteTo(buf[:n], a)
	}
}
