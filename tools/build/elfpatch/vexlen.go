package elfpatch

// vexLen returns the length of the VEX- (C4, C5) or EVEX-encoded (62)
// instruction at the start of code, or 0 if code does not start with one or
// is truncated.
//
// x86asm does not decode these encodings, but Go binaries contain them (AVX2
// and AVX-512 paths in runtime memmove/memclr, internal/bytealg, crypto). A
// linear sweep needs only their length to stay in step with the instruction
// stream, and the length is fully determined by the prefix (which gives the
// opcode map), the opcode (which says whether an imm8 follows) and ModRM/SIB
// (which give the displacement size).
func vexLen(code []byte) int {
	i := skipVEXPrefixes(code)
	if i >= len(code) {
		return 0
	}
	var m byte // opcode map: 1 = 0F, 2 = 0F38, 3 = 0F3A, 5/6 = EVEX FP16 maps
	evex := false
	switch code[i] {
	case 0xc5:
		m = 1
		i += 2
	case 0xc4:
		if i+1 >= len(code) {
			return 0
		}
		m = code[i+1] & 0x1f
		i += 3
	case 0x62:
		if i+3 >= len(code) {
			return 0
		}
		p0, p1 := code[i+1], code[i+2]
		// Fixed bits: P0 bit 3 is 0, P1 bit 2 is 1 (Intel SDM 2.7.1).
		if p0&0x08 != 0 || p1&0x04 == 0 {
			return 0
		}
		m = p0 & 0x07
		evex = true
		i += 4
	default:
		return 0
	}
	switch m {
	case 1, 2, 3:
	case 5, 6:
		if !evex {
			return 0
		}
	default:
		return 0
	}
	if i >= len(code) {
		return 0
	}
	op := code[i]
	i++
	// VZEROUPPER / VZEROALL: the only VEX instructions without ModRM.
	if !evex && m == 1 && op == 0x77 {
		return i
	}
	n := modrmLen(code[i:])
	if n == 0 {
		return 0
	}
	i += n
	if hasImm8(m, op) {
		i++
	}
	if i > len(code) {
		return 0
	}
	return i
}

// legacyMapLen returns the length of the legacy-encoded (non-VEX) instruction
// at the start of code if it is in opcode map 0F38 or 0F3A, and 0 otherwise.
// Those maps are regular: every instruction has a ModRM byte, 0F3A ones an
// imm8 and 0F38 ones no immediate. That covers the instructions x86asm does
// not know (ADCX/ADOX, SHA) without a table.
func legacyMapLen(code []byte) int {
	i := 0
	for i < len(code) && i < 14 {
		switch code[i] {
		case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3:
			i++
			continue
		}
		break
	}
	if i < len(code) && code[i]&0xf0 == 0x40 { // REX
		i++
	}
	if i+2 >= len(code) || code[i] != 0x0f || (code[i+1] != 0x38 && code[i+1] != 0x3a) {
		return 0
	}
	m := code[i+1]
	i += 3 // 0F, 38/3A, opcode
	n := modrmLen(code[i:])
	if n == 0 {
		return 0
	}
	i += n
	if m == 0x3a {
		i++
	}
	if i > len(code) {
		return 0
	}
	return i
}

// isVEX reports whether code starts with a VEX or EVEX instruction. In 64-bit
// mode C4, C5 and 62 are always VEX/EVEX: LES, LDS and BOUND do not exist.
func isVEX(code []byte) bool {
	i := skipVEXPrefixes(code)
	return i < len(code) && (code[i] == 0xc4 || code[i] == 0xc5 || code[i] == 0x62)
}

// skipVEXPrefixes returns the number of legacy prefixes that may precede a
// VEX/EVEX prefix: segment overrides and address size. 67 selects 32-bit
// addressing, whose ModRM/SIB/displacement layout is the same as 64-bit
// addressing's. Other prefixes before VEX make the instruction #UD.
func skipVEXPrefixes(code []byte) int {
	i := 0
	for i < len(code) && i < 14 {
		switch code[i] {
		case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67:
			i++
			continue
		}
		break
	}
	return i
}

// modrmLen returns the number of bytes taken by ModRM, SIB and displacement
// at the start of b, or 0 if b is too short.
func modrmLen(b []byte) int {
	if len(b) < 1 {
		return 0
	}
	modrm := b[0]
	mod, rm := modrm>>6, modrm&7
	n := 1
	if mod == 3 {
		return n
	}
	if rm == 4 {
		if len(b) < 2 {
			return 0
		}
		sib := b[1]
		n++
		if mod == 0 && sib&7 == 5 {
			n += 4 // no base: disp32
		}
	} else if mod == 0 && rm == 5 {
		n += 4 // RIP-relative disp32
	}
	switch mod {
	case 1:
		n++ // disp8 (EVEX scales it by N, but it is still one byte)
	case 2:
		n += 4
	}
	if n > len(b) {
		return 0
	}
	return n
}

// hasImm8 reports whether the VEX/EVEX opcode op in map m takes an 8-bit
// immediate: everything in map 0F3A, and in map 0F the shuffles, the shift-by-
// immediate groups, the compares and PINSRW/PEXTRW/SHUFPS. Maps 0F38, 5 and 6
// have none.
func hasImm8(m, op byte) bool {
	switch m {
	case 3:
		return true
	case 1:
		switch op {
		case 0x70, 0x71, 0x72, 0x73, 0xc2, 0xc4, 0xc5, 0xc6:
			return true
		}
	}
	return false
}
