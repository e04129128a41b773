package vmm

import "time"

// Phase is one step of a restore (Restore, then Run until the guest's
// first exit) and the time it took: the figures BenchmarkRestore and
// vmm restore --boot-time print, to tell which steps grow with memory
// size.
type Phase struct {
	Name string
	D    time.Duration
}

// phaseClock records the phases of a restore; a nil clock records
// nothing.
type phaseClock struct {
	start, last time.Time
	phases      []Phase
}

func newPhaseClock() *phaseClock {
	now := time.Now()
	return &phaseClock{start: now, last: now}
}

// mark ends the phase called name.
func (p *phaseClock) mark(name string) {
	if p == nil {
		return
	}
	now := time.Now()
	p.phases = append(p.phases, Phase{name, now.Sub(p.last)})
	p.last = now
}

// RestorePhases returns the phases of the restore that made vm, in order
// (nil for a VM New made). Once Run has seen the guest's first exit
// after the restore, the last phase is "first exit": from Run's start to
// that exit, an upper bound of the time until the guest ran its first
// instruction.
func (vm *VM) RestorePhases() []Phase {
	if vm.phases == nil {
		return nil
	}
	ps := append([]Phase(nil), vm.phases.phases...)
	if t := vm.vcpu.firstExit.Load(); t != 0 && !vm.runStart.IsZero() {
		ps = append(ps, Phase{"first exit", time.Unix(0, t).Sub(vm.runStart)})
	}
	return ps
}
