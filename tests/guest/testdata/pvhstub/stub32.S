/*
 * The 32-bit half of Amber's PVH entry (kernel/pvh_amd64.s carries these
 * bytes as BYTE directives: the Go assembler only emits 64-bit code).
 * Regenerate with ./gen.sh after any change and paste its output.
 *
 * Entered per the PVH ABI: 32-bit protected mode, paging off, CPL0,
 * flat CS/DS/ES/SS, EBX = hvm_start_info, ESP undefined, IF clear.
 * Constants are boot/boot.go's; TestQEMUSmoke and TestPVHBootUnderVMM
 * (tools/vmm/qemu_test.go) boot through this code.
 */
        .code32
        .text
        .globl stub32
stub32:
        cld
        /* 1. Move the start info, memory map and command line into
         * [StartInfoPA, +StartInfoMax): loaders put them anywhere in low
         * memory (QEMU pc: below 64 KiB, unmapped later; Firecracker:
         * the command line at 0x20000, where the GDT goes). */
        cmp     $0x10000, %ebx
        je      copied
        mov     %ebx, %esi
        mov     $0x10000, %edi
        mov     $14, %ecx                       /* 56 bytes */
        rep movsl
        xor     %eax, %eax
        mov     %eax, 0x10040                   /* no AmberInfo */
        mov     %eax, 0x10044
        mov     %eax, 0x10028                   /* memmap: none yet */
        mov     %eax, 0x1002c
        mov     %eax, 0x10030
        mov     %eax, 0x10018                   /* cmdline: none yet */
        mov     %eax, 0x1001c
        mov     40(%ebx), %esi                  /* memmap_paddr (below 4 GiB) */
        mov     48(%ebx), %ecx                  /* memmap_entries */
        test    %esi, %esi
        jz      nomap
        cmp     $16, %ecx
        jbe     1f
        mov     $16, %ecx
1:      mov     %ecx, 0x10030
        movl    $0x10100, 0x10028
        lea     (%ecx,%ecx,2), %ecx             /* 24 bytes = 6 dwords each */
        shl     $1, %ecx
        mov     $0x10100, %edi
        rep movsl
nomap:  mov     24(%ebx), %esi                  /* cmdline_paddr */
        test    %esi, %esi
        jz      copied
        movl    $0x10400, 0x10018
        mov     $0x10400, %edi
        mov     $0xfbff, %ecx                   /* MaxCmdline-1 */
2:      lodsb
        stosb
        test    %al, %al
        jz      copied
        loop    2b
        movb    $0, (%edi)
copied:
        /* 2. RAM end (EBP): the end of the RAM entry holding ImageBase,
         * at most MaxMemory, rounded down to 2 MiB (boot.RAMEnd). */
        mov     $0x10100, %esi
        mov     0x10030, %ecx
        xor     %ebp, %ebp
3:      test    %ecx, %ecx
        jz      6f
        cmpl    $1, 16(%esi)
        jne     5f
        cmpl    $0, 4(%esi)
        jne     5f
        mov     (%esi), %eax
        cmp     $0x200000, %eax
        ja      5f
        mov     8(%esi), %edx
        mov     12(%esi), %edi
        add     %eax, %edx
        adc     $0, %edi
        jnz     4f
        cmp     $0x200000, %edx
        jbe     5f
        cmp     $0xc0000000, %edx
        jbe     7f
4:      mov     $0xc0000000, %edx
7:      mov     %edx, %ebp
        jmp     6f
5:      add     $24, %esi
        dec     %ecx
        jmp     3b
6:      and     $0xffe00000, %ebp
        jz      dead
        /* EBX = 1 under Amber's VMM (AmberInfo present): guest memory is
         * fresh and zero, so the clearing below (emulated, slow at CPL0 on
         * shadow-paging hosts) can be skipped. */
        xor     %ebx, %ebx
        cmpl    $0x72000001, 0x10040            /* boot.AmberInfoMagic */
        jne     19f
        cmpl    $0x616d6265, 0x10044
        jne     19f
        inc     %ebx
19:

        /* 3. Page tables (vmm/x86.go writeTables): PML4 -> PDPT -> one PD
         * per GiB with 2 MiB pages; the PD's first entry -> a 4 KiB page
         * table with [0, NullGuard) left unmapped. User-accessible. */
        test    %ebx, %ebx
        jnz     20f
        mov     $0x30000, %edi
        mov     $0x1800, %ecx                   /* PML4, PDPT, low PT, 3 PDs */
        xor     %eax, %eax
        rep stosl
20:
        movl    $0x31007, 0x30000
        mov     $0x33000, %edi
        mov     $0x87, %eax
8:      mov     %eax, (%edi)
        add     $8, %edi
        add     $0x200000, %eax
        cmp     %ebp, %eax
        jb      8b
        movl    $0x32007, 0x33000
        mov     $0x31000, %edi
        mov     $0x33007, %eax
        lea     0x3fffffff(%ebp), %ecx
        shr     $30, %ecx
9:      mov     %eax, (%edi)
        add     $8, %edi
        add     $0x1000, %eax
        loop    9b
        mov     $0x32080, %edi
        mov     $0x10007, %eax
10:     mov     %eax, (%edi)
        add     $8, %edi
        add     $0x1000, %eax
        cmp     $0x200000, %eax
        jb      10b

        /* 4. GDT: Linux's selectors. */
        mov     $0x20000, %edi
        mov     $20, %ecx
        xor     %eax, %eax
        rep stosl
        mov     $0xffff, %eax
        mov     %eax, 0x20008
        movl    $0x00cf9a00, 0x2000c            /* 0x08 code32 DPL0 */
        mov     %eax, 0x20010
        movl    $0x00af9a00, 0x20014            /* 0x10 code64 DPL0 */
        mov     %eax, 0x20018
        movl    $0x00cf9200, 0x2001c            /* 0x18 data DPL0 */
        mov     %eax, 0x20020
        movl    $0x00cffa00, 0x20024            /* 0x23 code32 DPL3 */
        mov     %eax, 0x20028
        movl    $0x00cff200, 0x2002c            /* 0x2b data DPL3 */
        mov     %eax, 0x20030
        movl    $0x00affa00, 0x20034            /* 0x33 code64 DPL3 */
        movl    $0x20002068, 0x20040            /* 0x40 TSS at 0x22000, limit 0x2068 */
        movl    $0x00008902, 0x20044
        movw    $79, 0x20080                    /* GDTR image */
        movl    $0x20000, 0x20082

        /* 5. TSS: RSP0 and IST1 = IST1Top, IST2 = IST2Top, a full I/O
         * bitmap (all zero: every port allowed) ending in 0xff. */
        test    %ebx, %ebx
        jnz     21f
        mov     $0x22000, %edi
        mov     $0x81a, %ecx                    /* 0x2068 bytes */
        xor     %eax, %eax
        rep stosl
21:
        movl    $0x50000, 0x22004
        movl    $0x50000, 0x22024
        movl    $0x60000, 0x2202c
        movw    $0x68, 0x22066
        movb    $0xff, 0x24068

        /* 6. Mask both 8259s: a BIOS may have left the PIT's IRQ 0 on, and
         * the kernel runs with IF set. */
        mov     $0xff, %al
        out     %al, $0x21
        out     %al, $0xa1

        /* 7. CR4: PAE|OSFXSR|OSXMMEXCPT, FSGSBASE and OSXSAVE if present. */
        xor     %eax, %eax
        cpuid
        mov     %eax, %esi                      /* max basic leaf */
        mov     $0x620, %ebp                    /* (EBP: RAM end no longer needed) */
        mov     $1, %eax
        cpuid
        test    $0x04000000, %ecx               /* XSAVE */
        jz      11f
        or      $0x40000, %ebp
11:     cmp     $7, %esi
        jb      12f
        mov     $7, %eax
        xor     %ecx, %ecx
        cpuid
        test    $1, %ebx                        /* FSGSBASE */
        jz      12f
        or      $0x10000, %ebp
12:     test    $0x10000, %ebp
        jz      nofsgs
        mov     %ebp, %cr4

        /* 8. XCR0 = (x87|SSE|AVX) & what CPUID leaf 0xd offers. Amber's
         * VMM (AmberInfo present) has set it already: the CPL0 emulator of
         * shadow-paging hosts cannot run XGETBV/XSETBV. Skipped too if it
         * already has those bits. */
        test    $0x40000, %ebp
        jz      13f
        cmpl    $0x72000001, 0x10040            /* boot.AmberInfoMagic */
        jne     15f
        cmpl    $0x616d6265, 0x10044
        je      13f
15:
        cmp     $0xd, %esi
        jb      13f
        mov     $0xd, %eax
        xor     %ecx, %ecx
        cpuid
        and     $7, %eax
        or      $3, %eax
        mov     %eax, %ebx
        xor     %ecx, %ecx
        xgetbv
        and     $7, %eax
        cmp     %ebx, %eax
        je      13f
        mov     %ebx, %eax
        xor     %edx, %edx
        xor     %ecx, %ecx
        xsetbv

        /* 9. Long mode: CR3, EFER.LME (keeping SCE), GDT, CR0.PG. */
13:     mov     $0x30000, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx
        rdmsr
        or      $0x100, %eax
        wrmsr
        lgdt    0x20080
        mov     $0x80050033, %eax
        mov     %eax, %cr0

        /* 10. Far return into the 64-bit code that follows these bytes. */
        mov     $0x80000, %esp
        call    14f
14:     pop     %eax
        add     $(end32 - 14b), %eax
        push    $0x10
        push    %eax
        lret
        /* Fatal: print a message on COM1, exit through QEMU's
         * isa-debug-exit with boot.ExitCrash, else halt. The text is in
         * immediates (`vmm build` disassembles every kernel function as
         * 64-bit code, so no data may sit among these bytes). */
        .macro  say c:vararg
        .irp    ch, \c
        mov     $\ch, %al
        out     %al, %dx
        .endr
        .endm
nofsgs: mov     $0x3f8, %dx
        /* "amber: CPU lacks FSGSBASE (QEMU: -cpu max)\n" */
        say     97, 109, 98, 101, 114, 58, 32, 67, 80, 85, 32, 108, 97, 99, 107, 115, 32, 70, 83, 71, 83, 66, 65, 83, 69, 32, 40, 81, 69, 77, 85, 58, 32, 45, 99, 112, 117, 32, 109, 97, 120, 41, 10
        jmp     fatal
dead:   mov     $0x3f8, %dx
        /* "amber: no RAM at the image in the PVH memory map\n" */
        say     97, 109, 98, 101, 114, 58, 32, 110, 111, 32, 82, 65, 77, 32, 97, 116, 32, 116, 104, 101, 32, 105, 109, 97, 103, 101, 32, 105, 110, 32, 116, 104, 101, 32, 80, 86, 72, 32, 109, 101, 109, 111, 114, 121, 32, 109, 97, 112, 10
fatal:  mov     $0xf4, %dx
        mov     $125, %al
        out     %al, %dx
18:     hlt
        jmp     18b
end32:
