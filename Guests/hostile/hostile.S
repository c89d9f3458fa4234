/*
 * hostile's instruction-level pieces (see Hostile.swift and guest.h). System V ABI.
 */
        .text
        .code64

/* void ho_cli_spin(void): interrupts off and a one-instruction loop, for ever. */
        .globl  ho_cli_spin
ho_cli_spin:
        cli
1:      jmp     1b

/* int64_t ho_raw_trap(rax, rdi, rsi, rdx, r10, r8): the hypercall trap executed directly with
 * any number in RAX (no stub, no range check: what a hostile guest does). Returns RAX. */
        .globl  ho_raw_trap
ho_raw_trap:
        movq    %rdi, %rax
        movq    %rsi, %rdi
        movq    %rdx, %rsi
        movq    %rcx, %rdx
        movq    %r8, %r10
        movq    %r9, %r8
        inl     $0xf8, %eax
        movslq  %eax, %rax
        ret

/* uint64_t ho_trap_burst(uint64_t count, uint64_t *state): `count` hypercall traps (the
 * `in $0xf8` directly) with garbage from an xorshift64 generator whose state is *state:
 * RAX = a number below 64, or any 64-bit value one time in eight; every argument any 64-bit
 * value, the first one a small number (a sub-operation) half the time. The calls that would
 * end or park the guest become harmless ones, as in Hostile.swift's `stormArguments`:
 * sched_op block/shutdown/poll → yield, vcpu_op up/down → is_up. Returns how many failed. */
.macro XORSHIFT
        movq    %r14, %rax
        shrq    $12, %rax
        xorq    %rax, %r14
        movq    %r14, %rax
        shlq    $25, %rax
        xorq    %rax, %r14
        movq    %r14, %rax
        shrq    $27, %rax
        xorq    %rax, %r14
.endm
        .globl  ho_trap_burst
ho_trap_burst:
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rdi, %r12                      /* calls left */
        movq    %rsi, %r13                      /* &state */
        movq    (%r13), %r14
        xorl    %r15d, %r15d                    /* failures */
        testq   %r12, %r12
        jz      9f
1:      XORSHIFT
        movq    %r14, %rbx                      /* chooses the number */
        XORSHIFT
        movq    %r14, %rdi
        XORSHIFT
        movq    %r14, %rsi
        XORSHIFT
        movq    %r14, %rdx
        XORSHIFT
        movq    %r14, %r10
        XORSHIFT
        movq    %r14, %r8
        movq    %rbx, %rcx
        andl    $63, %ecx                       /* a number the page has a stub for */
        testq   $0x1c0, %rbx
        cmovzq  %rbx, %rcx                      /* or, one time in eight, anything */
        testq   $0x200, %rbx
        jz      2f
        andl    $15, %edi                       /* a small first argument: a sub-operation */
2:      cmpq    $29, %rcx                       /* sched_op */
        jne     3f
        leaq    -1(%rdi), %rax
        cmpq    $2, %rax                        /* block (1), shutdown (2), poll (3) */
        ja      4f
        xorl    %edi, %edi                      /* → yield */
        jmp     4f
3:      cmpq    $24, %rcx                       /* vcpu_op */
        jne     4f
        leaq    -1(%rdi), %rax
        cmpq    $1, %rax                        /* up (1), down (2) */
        ja      4f
        movl    $3, %edi                        /* → is_up */
4:      movq    %rcx, %rax
        inl     $0xf8, %eax
        testl   %eax, %eax
        jns     5f
        incq    %r15
5:      decq    %r12
        jnz     1b
9:      movq    %r14, (%r13)
        movq    %r15, %rax
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        ret

/* void ho_outsb(uint16_t port, const uint8_t *bytes, uint64_t count): `rep outsb`, one string
 * I/O instruction for the whole buffer. */
        .globl  ho_outsb
ho_outsb:
        movq    %rdx, %rcx
        movl    %edi, %edx
        cld
        rep outsb
        ret

/* uint64_t ho_divide_fault(void): divides by zero; the #DF handler resumes at ho_divide_resume
 * (see Hostile.swift's fault loop), which returns 1. */
        .globl  ho_divide_fault, ho_divide_resume
ho_divide_fault:
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        movl    $1, %eax
        divq    %rcx
        xorl    %eax, %eax
        ret
ho_divide_resume:
        movl    $1, %eax
        ret

/* uint64_t ho_noncanonical_fault(void): loads from a non-canonical address (#GP); resumes at
 * ho_noncanonical_resume, which returns 1. */
        .globl  ho_noncanonical_fault, ho_noncanonical_resume
ho_noncanonical_fault:
        movabsq $0x8000000000000000, %rcx
        movq    (%rcx), %rax
        xorl    %eax, %eax
        ret
ho_noncanonical_resume:
        movl    $1, %eax
        ret

/*
 * Memory probes for beyond-ram. Each touches the address in RDI; a fault inside
 * [ho_probes_start, ho_probes_end) is resumed by the guest's handler at ho_probe_fault, which
 * returns all ones. The probes push nothing, so the return address is on top of the stack at
 * the fault.
 */
        .globl  ho_probes_start, ho_probes_end, ho_probe_fault
ho_probes_start:

        .globl  ho_load8, ho_load16, ho_load32, ho_load64
ho_load8:
        movzbl  (%rdi), %eax
        ret
ho_load16:
        movzwl  (%rdi), %eax
        ret
ho_load32:
        movl    (%rdi), %eax
        ret
ho_load64:
        movq    (%rdi), %rax
        ret

/* void ho_storeN(address, value) */
        .globl  ho_store8, ho_store16, ho_store32, ho_store64
ho_store8:
        movb    %sil, (%rdi)
        xorl    %eax, %eax
        ret
ho_store16:
        movw    %si, (%rdi)
        xorl    %eax, %eax
        ret
ho_store32:
        movl    %esi, (%rdi)
        xorl    %eax, %eax
        ret
ho_store64:
        movq    %rsi, (%rdi)
        xorl    %eax, %eax
        ret

/* uint64_t ho_copy_in(dst = RAM, src = address, bytes): rep movsb from the address. */
        .globl  ho_copy_in
ho_copy_in:
        movq    %rdx, %rcx
        cld
        rep movsb
        xorl    %eax, %eax
        ret

/* uint64_t ho_copy_out(address, src = RAM, bytes): rep movsb to the address. */
        .globl  ho_copy_out
ho_copy_out:
        movq    %rdx, %rcx
        cld
        rep movsb
        xorl    %eax, %eax
        ret

/* uint64_t ho_fill(address, value, qwords): rep stosq. */
        .globl  ho_fill
ho_fill:
        movq    %rsi, %rax
        movq    %rdx, %rcx
        cld
        rep stosq
        xorl    %eax, %eax
        ret

/* uint64_t ho_xadd(address, value): lock xadd, returns the old value. */
        .globl  ho_xadd
ho_xadd:
        movq    %rsi, %rax
        lock xaddq %rax, (%rdi)
        ret

/* uint64_t ho_cmpxchg(address, expected, new): lock cmpxchg, returns what was there. */
        .globl  ho_cmpxchg
ho_cmpxchg:
        movq    %rsi, %rax
        lock cmpxchgq %rdx, (%rdi)
        ret

/* uint64_t ho_xchg(address, value): xchg with memory (implicitly locked). */
        .globl  ho_xchg
ho_xchg:
        movq    %rsi, %rax
        xchgq   %rax, (%rdi)
        ret

/* uint64_t ho_exec(address): jumps there, as if it were code (the fault handler knows the
 * address and resumes at ho_probe_fault, which returns to our caller). */
        .globl  ho_exec
ho_exec:
        jmp     *%rdi

ho_probe_fault:
        movq    $-1, %rax
        ret
ho_probes_end:

/* The code page xmodify rewrites from vCPU 1 while vCPU 0 calls into it: four 8-byte slots,
 * each `mov $imm32, %eax; ret; nop; nop` (written as one aligned 8-byte store, so a slot is
 * always a whole instruction pair, old or new). Writable and executable: the boot stub's
 * identity map sets no NX bit. */
        .data
        .balign 4096
        .globl  ho_code_page
ho_code_page:
        .rept   4
        .byte   0xb8, 0, 0, 0, 0, 0xc3, 0x90, 0x90
        .endr
        .fill   4096 - 32, 1, 0xcc
