// Command snaponce is "initialise once, serve many": it builds some state,
// snapshots itself with guest.Snapshot("ready"), and prints what the call
// returned and the state. TestGuestSnapshot runs it and restores the
// snapshot: the call returns in both.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/amberos/amber/guest"
)

func main() {
	state := 0
	for i := 1; i <= 1000; i++ {
		state += i
	}
	restored, err := guest.Snapshot("ready")
	if err != nil {
		fmt.Println("snapshot error:", err)
		os.Exit(1)
	}
	fmt.Println("restored", restored, "state", state)
	if !restored {
		// The name is taken now.
		_, err := guest.Snapshot("ready")
		fmt.Println("again:", errors.Is(err, guest.ErrExists), err)
	}
}
