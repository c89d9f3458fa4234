/* emufail's probes: one instruction each, at CPL0, after naming the recovery point. */
        .text
        .code64

.macro  FIXUP label
        leaq    \label(%rip), %rax
        movq    %rax, ef_fixup(%rip)
.endm

        .globl  ef_clwb
ef_clwb:
        FIXUP   1f
        clwb    (%rdi)
1:      ret

        .globl  ef_rdpru
ef_rdpru:
        FIXUP   1f
        xorl    %ecx, %ecx
        .byte   0x0f, 0x01, 0xfd                /* rdpru (MPERF) */
1:      ret

        .globl  ef_xgetbv
ef_xgetbv:
        FIXUP   1f
        xorl    %ecx, %ecx
        xgetbv
1:      ret

/* RFLAGS.AC is set with popfq (allowed at CPL0), so `clac` has something to clear. */
        .globl  ef_clac
ef_clac:
        FIXUP   1f
        pushfq
        orq     $(1 << 18), (%rsp)
        popfq
        clac
1:      pushfq
        popq    %rax
        andq    $(1 << 18), %rax
        pushfq
        andq    $~(1 << 18), (%rsp)
        popfq
        ret

        .globl  ef_stac
ef_stac:
        FIXUP   1f
        pushfq
        andq    $~(1 << 18), (%rsp)
        popfq
        stac
1:      pushfq
        popq    %rax
        andq    $(1 << 18), %rax
        pushfq
        andq    $~(1 << 18), (%rsp)
        popfq
        ret

/* CLAC with CR4.SMAP set around it, as a kernel uses it. SMAP is on only between the two CR4
 * writes, and nothing there touches memory: every page of these guests is a user page, which
 * SMAP forbids to CPL0 data accesses while AC is clear. AC is set before SMAP goes on, so CLAC
 * has something to clear. (No STAC here: it would be fetched with AC clear, and this host's KVM
 * raises #PF for that fetch from a user page, though SMAP does not apply to fetches.)
 * RAX: RFLAGS.AC afterwards. */
        .globl  ef_clac_under_smap
ef_clac_under_smap:
        pushfq
        orq     $(1 << 18), (%rsp)
        popfq
        movq    %cr4, %rdx
        movq    %rdx, %rcx
        orq     $(1 << 21), %rcx
        movq    %rcx, %cr4
        clac
        movq    %rdx, %cr4
        pushfq
        popq    %rax
        andq    $(1 << 18), %rax
        ret

        .globl  ef_invpcid
ef_invpcid:
        FIXUP   1f
        invpcid (%rsi), %rdi
1:      ret

/* Instructions this host's KVM spins on at CPL0 without exiting (found by Visor's stall
 * watchdog and carried out by its CPU): VMCALL and VMMCALL (#UD outside VMX/SVM operation)
 * and RDPMC of a counter no CPU has (#GP(0)). */
        .globl  ef_vmcall
ef_vmcall:
        FIXUP   1f
        xorl    %eax, %eax
        vmcall
1:      ret

        .globl  ef_vmmcall
ef_vmmcall:
        FIXUP   1f
        xorl    %eax, %eax
        vmmcall
1:      ret

        .globl  ef_rdpmc_invalid
ef_rdpmc_invalid:
        FIXUP   1f
        movl    $0x3fff, %ecx
        rdpmc
1:      ret

        .globl  ef_int3, ef_int3_next
ef_int3:
        FIXUP   ef_int3_next
        int3
ef_int3_next:
        ret

        .globl  ef_int80, ef_int80_next
ef_int80:
        FIXUP   ef_int80_next
        int     $0x80
ef_int80_next:
        ret

        .data
        .balign 8
        .globl  ef_fixup, ef_vector, ef_error, ef_rip
ef_fixup:  .quad 0
ef_vector: .quad 0
ef_error:  .quad 0
ef_rip:    .quad 0
