/*
 * systest's probes for MSRs and counters (MSRChecks.swift): each returns the value read, or all
 * ones after a fault (which the handler records in lastFault; a caller that must tell a real
 * all-ones value from a fault looks there).
 */
        .text
        .code64

.macro  SET_FIXUP label
        leaq    \label(%rip), %rax
        movq    %rax, probe_fixup(%rip)
.endm

        .globl  probe_rdmsr
probe_rdmsr:                            /* uint64_t probe_rdmsr(uint32_t msr) */
        SET_FIXUP 9f
        movl    %edi, %ecx
        rdmsr
        movq    $0, probe_fixup(%rip)
        shlq    $32, %rdx
        movl    %eax, %eax
        orq     %rdx, %rax
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_rdpmc
probe_rdpmc:                            /* uint64_t probe_rdpmc(uint32_t counter) */
        SET_FIXUP 9f
        movl    %edi, %ecx
        rdpmc
        movq    $0, probe_fixup(%rip)
        shlq    $32, %rdx
        movl    %eax, %eax
        orq     %rdx, %rax
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_rdtscp
probe_rdtscp:                           /* uint64_t probe_rdtscp(uint64_t *aux): TSC; RCX to *aux */
        SET_FIXUP 9f
        movq    $-1, %rcx
        rdtscp
        movq    $0, probe_fixup(%rip)
        movq    %rcx, (%rdi)
        shlq    $32, %rdx
        movl    %eax, %eax
        orq     %rdx, %rax
        ret
9:      movq    $-1, %rax
        ret
