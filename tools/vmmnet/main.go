// Command vmm-net is the user-mode network of vmm run --net user, in a
// process of its own so that vmm does not link gVisor's TCP/IP stack
// (whose package initialisation would slow every vmm start): vmm starts
// it with one end of a SOCK_SEQPACKET socket pair as file descriptor 3,
// one Ethernet frame per message, and waits for "ready" (followed by the
// host forwards as they listen) on its standard output, or an error on
// its standard error. It exits when vmm closes the
// socket. It is not meant to be run by hand.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/amberos/amber/vmm"
	"github.com/amberos/amber/vmm/usernet"
)

type listFlag []string

func (l *listFlag) String() string     { return fmt.Sprint(*l) }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	mac := flag.String("mac", "", "the guest's MAC `address` (it gets 10.0.2.15 by DHCP)")
	var fwds listFlag
	flag.Var(&fwds, "hostfwd", "a host forward, QEMU's `PROTO:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT` (repeatable)")
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "vmm-net: %v\n", err)
		os.Exit(1)
	}
	hw, err := net.ParseMAC(*mac)
	if err != nil {
		fail(fmt.Errorf("-mac: %v", err))
	}
	spec := "user"
	for _, f := range fwds {
		spec += ",hostfwd=" + f
	}
	ns, err := vmm.ParseNetSpec(spec)
	if err != nil {
		fail(err)
	}
	sock := os.NewFile(3, "vmm socket")
	if sock == nil {
		fail(fmt.Errorf("no socket on file descriptor 3: vmm starts this program"))
	}
	n, err := usernet.New(hw, ns.Forwards)
	if err != nil {
		fail(err)
	}
	// "ready" and the forwards as they listen (a host port 0 asked for
	// is the one the kernel chose), for vmm to print.
	ready := "ready"
	for _, f := range n.Forwards() {
		ready += " " + f.String()
	}
	fmt.Println(ready)
	done := make(chan struct{}, 2)
	go func() { // guest -> network
		buf := make([]byte, n.MTU()+18)
		for {
			k, err := sock.Read(buf)
			if err != nil || k == 0 {
				break
			}
			n.Send(buf[:k])
		}
		done <- struct{}{}
	}()
	go func() { // network -> guest
		buf := make([]byte, n.MTU()+18)
		for {
			k, err := n.Recv(buf)
			if err != nil {
				break
			}
			if _, err := sock.Write(buf[:k]); err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
	n.Close()
}
