package elfpatch

import (
	"encoding/hex"
	"math/rand"
	"strings"
	"testing"
)

// Encodings and mnemonics from GNU as 2.40 and objdump.
var vexTests = []struct{ hex, asm string }{
	{"c5 f8 77", "vzeroupper"},
	{"c5 fc 77", "vzeroall"},
	{"c5 fe 6f 06", "vmovdqu (%rsi),%ymm0"},
	{"c5 fe 6f 4c 0e 20", "vmovdqu 0x20(%rsi,%rcx,1),%ymm1"},
	{"c5 7e 6f be 45 23 01 00", "vmovdqu 0x12345(%rsi),%ymm15"},
	{"c5 fe 6f 15 00 10 00 00", "vmovdqu 0x1000(%rip),%ymm2"},
	{"c5 fd 70 c8 1b", "vpshufd $0x1b,%ymm0,%ymm1"},
	{"c5 f5 73 d8 08", "vpsrldq $0x8,%ymm0,%ymm1"},
	{"c5 d5 74 f4", "vpcmpeqb %ymm4,%ymm5,%ymm6"},
	{"c5 f1 c4 d0 01", "vpinsrw $0x1,%eax,%xmm1,%xmm2"},
	{"c4 e3 7d 39 ca 01", "vextracti128 $0x1,%ymm1,%xmm2"},
	{"c4 e2 7d 78 c8", "vpbroadcastb %xmm0,%ymm1"},
	{"c4 e3 75 46 14 d8 20", "vperm2i128 $0x20,(%rax,%rbx,8),%ymm1,%ymm2"},
	{"62 f1 fe 48 6f 06", "vmovdqu64 (%rsi),%zmm0"},
	{"62 e1 fe 48 6f 46 01", "vmovdqu64 0x40(%rsi),%zmm16"},
	{"62 61 fe c9 6f 7c 96 02", "vmovdqu64 0x80(%rsi,%rdx,4),%zmm31{%k1}{z}"},
	{"62 f3 6d 48 25 d9 96", "vpternlogd $0x96,%zmm1,%zmm2,%zmm3"},
	{"62 f1 75 48 72 e0 05", "vpsrad $0x5,%zmm0,%zmm1"},
	{"62 f3 6d 48 3e c9 04", "vpcmpnequb %zmm1,%zmm2,%k1"},
	{"c5 ec c2 d9 01", "vcmpltps %ymm1,%ymm2,%ymm3"},
	{"c4 e2 f9 f7 cb", "shlx %rax,%rbx,%rcx"},
	{"c4 e3 fb f0 d8 03", "rorx $0x3,%rax,%rbx"},
	{"c4 e2 fb f6 1c 24", "mulx (%rsp),%rax,%rbx"},
	{"c5 fe 6f 04 85 00 00 00 00", "vmovdqu 0x0(,%rax,4),%ymm0"},
	{"c4 e2 6d dc d9", "vaesenc %ymm1,%ymm2,%ymm3"},
	{"62 f3 6d 48 44 d9 11", "vpclmulhqhqdq %zmm1,%zmm2,%zmm3"},
	{"64 c5 fe 6f 00", "vmovdqu %fs:(%rax),%ymm0"},
	{"67 c5 fe 6f 00", "vmovdqu (%eax),%ymm0"},
}

var legacyMapTests = []struct{ hex, asm string }{
	{"66 4c 0f 38 f6 eb", "adcx %rbx,%r13"},
	{"f3 4d 0f 38 f6 28", "adox (%r8),%r13"},
	{"66 0f 38 00 d1", "pshufb %xmm1,%xmm2"},
	{"66 0f 38 dc 48 10", "aesenc 0x10(%rax),%xmm1"},
	{"0f 38 cb d1", "sha256rnds2 %xmm0,%xmm1,%xmm2"},
	{"0f 3a cc d1 03", "sha1rnds4 $0x3,%xmm1,%xmm2"},
	{"66 0f 3a 0f 1c 48 04", "palignr $0x4,(%rax,%rcx,2),%xmm3"},
	{"f2 48 0f 38 f1 d8", "crc32 %rax,%rbx"},
	{"0f 38 f0 07", "movbe (%rdi),%eax"},
	{"66 0f 3a 44 d1 00", "pclmullqlqdq %xmm1,%xmm2"},
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLengthDecoders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fn    func([]byte) int
		tests []struct{ hex, asm string }
	}{{"vexLen", vexLen, vexTests}, {"legacyMapLen", legacyMapLen, legacyMapTests}} {
		for _, c := range tc.tests {
			b := unhex(t, c.hex)
			// Followed by a SYSCALL, which must not be swallowed.
			if n := tc.fn(append(b, 0x0f, 0x05)); n != len(b) {
				t.Errorf("%s(%s) [%s] = %d, want %d", tc.name, c.hex, c.asm, n, len(b))
			}
			for i := range b {
				if n := tc.fn(b[:i]); n != 0 {
					t.Errorf("%s(%s truncated to %d) = %d, want 0", tc.name, c.hex, i, n)
				}
			}
		}
	}
	for _, s := range []string{"0f 05", "90", "48 89 e5", "c4 e4 00 00 c0", "62 f1 fa 48 6f 06" /* P1 bit 2 clear */, "62 f9 fe 48 6f 06" /* P0 bit 3 set */} {
		if n := vexLen(unhex(t, s)); n != 0 {
			t.Errorf("vexLen(%s) = %d, want 0", s, n)
		}
	}
	if n := legacyMapLen(unhex(t, "0f 05")); n != 0 {
		t.Errorf("legacyMapLen(0f 05) = %d, want 0", n)
	}
	// Never panic, never claim more bytes than given.
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 100000; i++ {
		b := make([]byte, rng.Intn(16))
		rng.Read(b)
		if len(b) > 0 && rng.Intn(2) == 0 {
			b[0] = []byte{0xc4, 0xc5, 0x62, 0x0f, 0x66}[rng.Intn(5)]
		}
		if n := vexLen(b); n > len(b) {
			t.Fatalf("vexLen(% x) = %d", b, n)
		}
		if n := legacyMapLen(b); n > len(b) {
			t.Fatalf("legacyMapLen(% x) = %d", b, n)
		}
	}
}
