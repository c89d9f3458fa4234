/*
 * systest's debug-register probes (DebugChecks.swift): a #DB handler that records what the CPU
 * pushed and DR6, a #UD handler that records the pushed RFLAGS, moves to and from the debug
 * registers that may fault (recovery through probe_fixup, as in entry.S), and short code
 * sequences with labels the checks compare pushed RIPs against. Kept short: on a host that
 * emulates guest CPL0 every instruction here is emulated.
 */
        .text
        .code64

.macro  SET_FIXUP label
        leaq    \label(%rip), %rax
        movq    %rax, probe_fixup(%rip)
.endm

/* #DB: count it, record the pushed RIP and RFLAGS (the first and the last), DR6 and DR7 as the
 * handler sees them and its own RFLAGS; then set RF in the image (so an instruction breakpoint
 * does not fire again on return, SDM 17.3.1.1) and return. */
        .globl  debug_db_handler
debug_db_handler:
        pushq   %rax
        incq    db_count(%rip)
        movq    8(%rsp), %rax
        movq    %rax, db_last_rip(%rip)
        cmpq    $1, db_count(%rip)
        jne     1f
        movq    %rax, db_first_rip(%rip)
        movq    24(%rsp), %rax
        movq    %rax, db_first_rflags(%rip)
1:      movq    24(%rsp), %rax
        movq    %rax, db_last_rflags(%rip)
        movq    %dr6, %rax
        movq    %rax, db_dr6(%rip)
        movq    %dr7, %rax
        movq    %rax, db_dr7(%rip)
        pushfq
        popq    %rax
        movq    %rax, db_handler_rflags(%rip)
        orq     $0x10000, 24(%rsp)
        popq    %rax
        iretq

/* #UD: record the pushed RFLAGS, return past a two-byte UD2. */
        .globl  debug_ud_handler
debug_ud_handler:
        pushq   %rax
        movq    24(%rsp), %rax
        movq    %rax, ud_rflags(%rip)
        addq    $2, 8(%rsp)
        popq    %rax
        iretq

        .globl  debug_ud2
debug_ud2:
        ud2
        ret

        .globl  debug_idt_base
debug_idt_base:                         /* uint64_t debug_idt_base(void) */
        subq    $16, %rsp
        sidt    (%rsp)
        movq    2(%rsp), %rax
        addq    $16, %rsp
        ret

/* uint64_t debug_read_dr(int n) and uint64_t debug_write_dr(int n, uint64_t value): 0..7;
 * all ones (read) or -1 (write) after a fault, which the exception handler records. */
        .globl  debug_read_dr
debug_read_dr:
        SET_FIXUP 9f
        leaq    2f(%rip), %rax
        leaq    (%rax,%rdi,8), %rax
        jmp     *%rax
        .balign 8
2:      movq    %dr0, %rax; jmp 3f; .balign 8
        movq    %dr1, %rax; jmp 3f; .balign 8
        movq    %dr2, %rax; jmp 3f; .balign 8
        movq    %dr3, %rax; jmp 3f; .balign 8
        .globl  debug_read_dr4_instruction
debug_read_dr4_instruction:
        movq    %dr4, %rax; jmp 3f; .balign 8
        movq    %dr5, %rax; jmp 3f; .balign 8
        movq    %dr6, %rax; jmp 3f; .balign 8
        movq    %dr7, %rax; jmp 3f; .balign 8
3:      movq    $0, probe_fixup(%rip)
        ret
9:      movq    $-1, %rax
        ret

        .globl  debug_write_dr
debug_write_dr:
        SET_FIXUP 9f
        leaq    2f(%rip), %rax
        leaq    (%rax,%rdi,8), %rax
        jmp     *%rax
        .balign 8
2:      movq    %rsi, %dr0; jmp 3f; .balign 8
        movq    %rsi, %dr1; jmp 3f; .balign 8
        movq    %rsi, %dr2; jmp 3f; .balign 8
        movq    %rsi, %dr3; jmp 3f; .balign 8
        movq    %rsi, %dr4; jmp 3f; .balign 8
        movq    %rsi, %dr5; jmp 3f; .balign 8
        movq    %rsi, %dr6; jmp 3f; .balign 8
        movq    %rsi, %dr7; jmp 3f; .balign 8
3:      movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    $-1, %rax
        ret

/* With DR7.GD set: MOV from DR0 faults (#DB, BD) at this label; the handler returns to it and
 * the move then runs, GD being clear. */
        .globl  debug_general_detect
debug_general_detect:
        .globl  debug_gd_instruction
debug_gd_instruction:
        movq    %dr0, %rax
        ret

/* An instruction-breakpoint target: adds 1 to bp_counter. */
        .globl  debug_bp_target
debug_bp_target:
        incq    bp_counter(%rip)
        ret

/* Data accesses to the watched quadword: a 2-byte write at +2, 4-byte reads at +0 and +4, a byte
 * write at +8 (outside an 8-byte breakpoint on it). Each returns after its access; the label
 * after each access is what a trap pushes. */
        .globl  debug_write_watched
debug_write_watched:
        movw    $0x1234, watched+2(%rip)
        .globl  debug_after_write
debug_after_write:
        ret
        .globl  debug_read_watched
debug_read_watched:
        movl    watched(%rip), %eax
        .globl  debug_after_read
debug_after_read:
        ret
        .globl  debug_read_watched_high
debug_read_watched_high:
        movl    watched+4(%rip), %eax
        .globl  debug_after_read_high
debug_after_read_high:
        ret
        .globl  debug_write_beside
debug_write_beside:
        movb    $1, watched+8(%rip)
        ret

/* Single-stepping: POPF sets TF (no trap after it), two NOPs and a PUSHF step, POPF clears TF
 * (a trap after it still). Five traps, the first at ss_second, the last at ss_end. */
        .globl  debug_single_step
debug_single_step:
        pushfq
        orq     $0x100, (%rsp)
        popfq
        nop
        .globl  debug_ss_second
debug_ss_second:
        nop
        pushfq
        andq    $~0x100, (%rsp)
        popfq
        .globl  debug_ss_end
debug_ss_end:
        ret

/* INT3 with TF set (CPL3): the #BP handler runs with TF clear and IRET restores it; the first
 * single-step trap is after the instruction after INT3. */
        .globl  debug_int3_step
debug_int3_step:
        pushfq
        orq     $0x100, (%rsp)
        popfq
        int3
        nop
        .globl  debug_int3_step_trap
debug_int3_step_trap:
        pushfq
        andq    $~0x100, (%rsp)
        popfq
        ret

        .data
        .balign 8
        .globl  db_count, db_first_rip, db_first_rflags, db_last_rip, db_last_rflags
        .globl  db_dr6, db_dr7, db_handler_rflags, ud_rflags, bp_counter, watched
db_count:               .quad 0
db_first_rip:           .quad 0
db_first_rflags:        .quad 0
db_last_rip:            .quad 0
db_last_rflags:         .quad 0
db_dr6:                 .quad 0
db_dr7:                 .quad 0
db_handler_rflags:      .quad 0
ud_rflags:              .quad 0
bp_counter:             .quad 0
        .balign 16
watched:                .quad 0, 0
