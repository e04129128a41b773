package kernel

import "github.com/amberos/amber/drivers/portio"

// The clocks a PVH boot (QEMU, another loader) starts from: the TSC's
// frequency from CPUID or measured against the 8254 PIT (or the CMOS RTC),
// and the wall-clock time from the RTC. Under Amber's VMM the start info
// carries both and none of this runs.

// tscFrequency finds the TSC's rate: from the hypervisor's timing leaf or
// CPUID leaf 0x15/0x16 when they give it, else by counting TSC ticks
// against the PIT or, failing that, against the RTC's seconds.
//
//go:nosplit
func tscFrequency() uint64 {
	if a, _, _, _ := cpuid(0x40000000, 0); a >= 0x40000010 && a < 0x40010000 {
		if khz, _, _, _ := cpuid(0x40000010, 0); khz != 0 {
			return uint64(khz) * 1000
		}
	}
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf >= 0x15 {
		den, num, crystal, _ := cpuid(0x15, 0)
		if den != 0 && num != 0 && crystal != 0 {
			return uint64(crystal) * uint64(num) / uint64(den)
		}
	}
	if maxLeaf >= 0x16 {
		if mhz, _, _, _ := cpuid(0x16, 0); mhz != 0 {
			return uint64(mhz) * 1_000_000
		}
	}
	if hz := pitCalibrateStable(); hz != 0 {
		return hz
	}
	if hz := rtcCalibrate(); hz != 0 {
		return hz
	}
	kfatal("boot: TSC frequency unknown (no CPUID leaf, PIT or RTC)")
	return 0
}

// pitCalibrateStable measures the TSC against the PIT until two
// measurements agree within 0.5%: a host that deschedules the vCPU in the
// middle of one (a busy host; seen once in 600 boots under QEMU with every
// core loaded) spoils that one only, where a single measurement failed the
// boot or set the clock's rate wrong. On a host so busy that no two of 16
// agree (QEMU's emulator at load 18 on 2 cores did this), the median is
// taken and the boot goes on with a warning: a clock running slightly
// wrong is better than no program.
//
//go:nosplit
func pitCalibrateStable() uint64 {
	var seen [16]uint64
	n := 0
	for try := 0; try < len(seen); try++ {
		hz := pitCalibrate()
		if hz == 0 {
			continue
		}
		for _, prev := range seen[:n] {
			d := hz - prev
			if hz < prev {
				d = prev - hz
			}
			if d*200 <= prev {
				return (hz + prev) / 2
			}
		}
		// Insertion keeps seen sorted, for the median.
		i := n
		for i > 0 && seen[i-1] > hz {
			seen[i] = seen[i-1]
			i--
		}
		seen[i] = hz
		n++
	}
	if n == 0 {
		return 0
	}
	kprint("amber: TSC calibration unstable (a busy host?): using the median of the measurements\n")
	return seen[n/2]
}

// The 8254 PIT: channel 0 counts down at 1.193182 MHz.
const (
	pitHz      = 1193182
	pitCh0     = 0x40
	pitCmd     = 0x43
	pitSpanTks = pitHz / 100 // one measurement spans 10 ms
)

//go:nosplit
func pitRead() uint16 {
	portio.Out8(pitCmd, 0x00) // latch channel 0
	lo := portio.In8(pitCh0)
	hi := portio.In8(pitCh0)
	return uint16(hi)<<8 | uint16(lo)
}

// pitCalibrate measures the TSC against PIT channel 0 (mode 2, period
// 65536: it wraps every 55 ms, so the elapsed count is taken modulo
// 65536 between close reads). 0 if there is no working PIT.
//
//go:nosplit
func pitCalibrate() uint64 {
	portio.Out8(pitCmd, 0x34) // channel 0, lobyte/hibyte, mode 2
	portio.Out8(pitCh0, 0)
	portio.Out8(pitCh0, 0)
	prev := pitRead()
	// Start on a tick edge.
	for i := 0; ; i++ {
		if i > 1_000_000 {
			return 0
		}
		c := pitRead()
		if c != prev {
			prev = c
			break
		}
	}
	t0 := rdtsc()
	elapsed := uint64(0)
	stuck := 0
	for elapsed < pitSpanTks {
		c := pitRead()
		d := uint64(uint16(prev - c))
		if d == 0 || d > 0x8000 { // no progress, or read out of order
			stuck++
			if stuck > 1_000_000 {
				return 0
			}
			continue
		}
		stuck = 0
		elapsed += d
		prev = c
	}
	hz := (rdtsc() - t0) * pitHz / elapsed
	if hz < 100_000_000 || hz > 20_000_000_000 {
		return 0
	}
	return hz
}

// The MC146818 CMOS RTC.
const (
	cmosIndex = 0x70
	cmosData  = 0x71
)

//go:nosplit
func cmosRead(reg uint8) uint8 {
	portio.Out8(cmosIndex, reg)
	return portio.In8(cmosData)
}

// rtcCalibrate counts TSC ticks between two RTC update cycles, which are
// a second apart. It takes up to two seconds; 0 if there is no RTC.
//
//go:nosplit
func rtcCalibrate() uint64 {
	var t [2]uint64
	for k := 0; k < 2; k++ {
		start := rdtsc()
		for cmosRead(0x0a)&0x80 != 0 { // let a running update finish
			if rdtsc()-start > 1<<34 {
				return 0
			}
		}
		for cmosRead(0x0a)&0x80 == 0 { // wait for the next one to start
			if rdtsc()-start > 1<<34 {
				return 0
			}
		}
		t[k] = rdtsc()
	}
	hz := t[1] - t[0]
	if hz < 100_000_000 || hz > 20_000_000_000 {
		return 0
	}
	return hz
}

// rtcNow reads the wall-clock time from the RTC and the TSC at that
// moment. The RTC counts whole seconds; without one the clock starts at
// the Unix epoch.
//
//go:nosplit
func rtcNow() (tsc uint64, unixNs int64) {
	for i := 0; i < 1_000_000 && cmosRead(0x0a)&0x80 != 0; i++ {
	}
	tsc = rdtsc()
	sec, min, hour := cmosRead(0), cmosRead(2), cmosRead(4)
	day, mon, year := cmosRead(7), cmosRead(8), cmosRead(9)
	cent := cmosRead(0x32)
	regB := cmosRead(0x0b)
	pm := hour&0x80 != 0
	hour &= 0x7f
	if regB&0x04 == 0 { // BCD
		sec, min, hour = bcd(sec), bcd(min), bcd(hour)
		day, mon, year, cent = bcd(day), bcd(mon), bcd(year), bcd(cent)
	}
	if regB&0x02 == 0 { // 12-hour clock
		hour %= 12
		if pm {
			hour += 12
		}
	}
	if sec > 59 || min > 59 || hour > 23 || day < 1 || day > 31 || mon < 1 || mon > 12 || year > 99 {
		return tsc, 0
	}
	y := 2000 + int64(year)
	if cent >= 19 && cent <= 29 {
		y = int64(cent)*100 + int64(year)
	}
	days := daysFromCivil(y, int64(mon), int64(day))
	return tsc, ((days*24+int64(hour))*60+int64(min))*60e9 + int64(sec)*1e9
}

//go:nosplit
func bcd(v uint8) uint8 { return v>>4*10 + v&15 }

// daysFromCivil is the number of days from 1970-01-01 to y-m-d
// (proleptic Gregorian; H. Hinnant's algorithm).
//
//go:nosplit
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
