package kernel

import "github.com/amberos/amber/boot"

// Constants the assembly reads through go_asm.h (as const_NAME), named
// here so the assembly and the Go definitions they come from cannot drift.
const (
	asmUserDS        = boot.SelUserData // SS of a user context (IRETQ frames)
	asmUserCS        = boot.SelUserCode
	asmISTBottom     = boot.ISTPA        // [ISTBottom, BootStackTop): the exception and boot stacks
	asmBootStackTop  = boot.BootStackTop //
	asmHypercallPort = boot.HypercallPort
	asmLapicEOI      = lapicBase + lapicEOI // the LAPIC's end-of-interrupt register
	asmIRQDrain      = irqDrainVector
	xsaveRoom        = 4096 // room for an XSAVE image of every component this CPU may enable (xsaveSize is checked against it at boot)
)

// trapFrame is boot.TrapFrame as a type of this package, so that go_asm.h
// gives trapCommon its offsets (trapFrame_RAX, ...).
type trapFrame boot.TrapFrame
