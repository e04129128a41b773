package netsvc

import (
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// dhcp asks the network for an address.
func dhcp(st *stack.Stack, mac tcpip.LinkAddress) (NetConfig, error) {
	return NetConfig{}, errors.New("not supported yet: use amber.ip=ADDR/LEN")
}
