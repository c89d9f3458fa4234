/*
 * systest's compatibility-mode probes (CompatChecks.swift, issue 15 item 7): 32-bit code at
 * CPL3 under long mode (CS 0x5b, a DPL3 32-bit code segment in the GDT CompatChecks installs),
 * entered with a far return from 64-bit mode and left with a far jump back to CS 0x23.
 *
 * GDT layout added after GuestKit's eight entries (so SYSENTER_CS = 0x48 gives SYSEXIT's
 * selectors): 0x48 kernel code64, 0x50 kernel data, 0x58 user code32, 0x60 user data,
 * 0x68 user code64, 0x70 a task gate (for the IA-32e #GP check), 0x78 a 64-bit call gate (DPL 3)
 * to compat_callgate_entry in kernel code 0x08.
 *
 * Each probe records what it sees in compat_obs[] (CompatChecks.swift names the slots). A fault
 * in compat code resumes at a 32-bit fixup (probe_fixup), which goes back to 64-bit mode.
 */

#define USER_CS64       0x23
#define USER_DS         0x1b
#define COMPAT_CS       0x5b

        .data
        .balign 8
        .globl  compat_obs, compat_return_with_iret, compat_sysenter_return
compat_obs:                     .fill 24, 8, 0
compat_return_with_iret:        .quad 0         /* CSTAR handler: IRETQ instead of SYSRETL */
compat_sysenter_return:         .quad 0         /* SYSENTER handler: 0 SYSEXITL, 1 SYSRETL, 2 IRETQ */
compat_saved_rsp:               .quad 0
compat_user_flags:              .long 0
compat_far_tss:                 .long 0         /* m16:32 far pointers for the #GP checks */
                                .word 0x28
compat_far_gate:                .long 0
                                .word 0x70
compat_far_callgate:            .long 0
                                .word 0x7b

#define OBS(n)  (compat_obs + 8 * (n))

        .text
        .code64
/* void compat_run(uint64_t entry, uint64_t fixup): runs `entry` in compatibility mode at the
 * caller's CPL (3), with `fixup` (32-bit code) as the recovery point for a fault. */
        .globl  compat_run
compat_run:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, compat_saved_rsp(%rip)
        movq    %rsi, probe_fixup(%rip)
        pushfq
        popq    %rax
        movl    %eax, compat_user_flags(%rip)
        pushq   $COMPAT_CS
        pushq   %rdi
        lretq
compat_back:                            /* reached from compat code by ljmp $0x23 */
        movl    $USER_DS, %eax          /* SYSEXIT/SYSRET may leave other SS selectors */
        movw    %ax, %ss
        movq    compat_saved_rsp(%rip), %rsp
        movq    $0, probe_fixup(%rip)
        pushq   compat_user_flags(%rip) /* IOPL and IF as they were (SYSENTER clears IF) */
        popfq
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret

/* uint64_t compat_far_jump_to_tss(void) / compat_far_call_to_task_gate(void) /
 * compat_iretq_with_nt(void): 64-bit probes that must raise #GP; 0, or all ones after a fault. */
        .globl  compat_far_jump_to_tss
compat_far_jump_to_tss:
        leaq    9f(%rip), %rax
        movq    %rax, probe_fixup(%rip)
        ljmpl   *compat_far_tss(%rip)
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    $-1, %rax
        ret

        .globl  compat_far_call_to_task_gate
compat_far_call_to_task_gate:
        leaq    9f(%rip), %rax
        movq    %rax, probe_fixup(%rip)
        movq    %rsp, %rdx
        lcalll  *compat_far_gate(%rip)
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    %rdx, %rsp
        movq    $-1, %rax
        ret

        .globl  compat_iretq_with_nt
compat_iretq_with_nt:
        leaq    9f(%rip), %rax
        movq    %rax, probe_fixup(%rip)
        movq    %rsp, %rdx
        movq    %ss, %rax
        pushq   %rax
        pushq   %rdx
        pushfq
        movq    %cs, %rax
        pushq   %rax
        leaq    8f(%rip), %rax
        pushq   %rax
        pushfq
        orq     $0x4000, (%rsp)         /* EFLAGS.NT */
        popfq
        iretq
8:      movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    %rdx, %rsp
        pushfq
        andq    $~0x4000, (%rsp)
        popfq
        movq    $-1, %rax
        ret

/* SYSCALL from compatibility mode enters here (IA32_CSTAR) at CPL0 on the user stack. */
        .globl  compat_cstar_entry
compat_cstar_entry:
        movq    %cs, %rax
        movq    %rax, OBS(4)
        movq    %rcx, OBS(5)
        movq    %r11, OBS(6)
        cmpq    $0, compat_return_with_iret(%rip)
        jne     1f
        sysretl                         /* to compatibility mode: CS = STAR[63:48] | 3, EIP = ECX */
1:      movq    %rsp, %rdx              /* for hosts without SYSRET: back to CS 0x5b by IRETQ */
        pushq   $USER_DS
        pushq   %rdx
        pushq   %r11
        pushq   $COMPAT_CS
        pushq   %rcx
        iretq

/* SYSENTER (from compatibility mode) enters here at CPL0, on IA32_SYSENTER_ESP. */
        .globl  compat_sysenter_entry
compat_sysenter_entry:
        movq    %cs, %rax
        movq    %rax, OBS(10)
        leaq    compat_after_sysenter(%rip), %rdx
        movl    OBS(11), %ecx           /* the user ESP, recorded before SYSENTER */
        cmpq    $1, compat_sysenter_return(%rip)
        je      1f
        ja      2f
        sysexitl                        /* to compatibility mode: CS = SYSENTER_CS + 16, EIP = EDX */
1:      movq    %rdx, %rcx
        movl    compat_user_flags(%rip), %r11d
        sysretl
2:      pushq   $USER_DS                /* where SYSENTER should not have entered: back by IRETQ */
        pushq   %rcx
        movl    compat_user_flags(%rip), %eax
        pushq   %rax
        pushq   $COMPAT_CS
        pushq   %rdx
        iretq

/* A far CALL through the 64-bit call gate enters here at CPL0 on RSP0 with a null SS; the
 * frame holds RIP, CS, RSP and SS (8 bytes each). Back with RETQ (REX.W far return). */
        .globl  compat_callgate_entry
compat_callgate_entry:
        movq    %cs, %rax
        movq    %rax, OBS(18)
        movq    %ss, %rax
        movq    %rax, OBS(19)
        movq    8(%rsp), %rax
        movq    %rax, OBS(20)
        movq    24(%rsp), %rax
        movq    %rax, OBS(21)
        lretq

/* ------------------------------------------------------------ compatibility-mode code */
        .code32
.macro  BACK
        ljmp    $USER_CS64, $compat_back
.endm
.macro  RECORD_SEGMENT seg, slot
        movw    %\seg, %ax
        movzwl  %ax, %eax
        movl    %eax, OBS(\slot)
.endm

        .globl  compat_fixup
compat_fixup:
        BACK

/* 32-bit code really runs 32-bit: 48 is DEC EAX here (a REX prefix in 64-bit mode). */
        .globl  compat_mode_probe
compat_mode_probe:
        movl    $USER_DS, %eax
        movw    %ax, %ds
        movw    %ax, %es
        movl    $1, %eax
        .byte   0x48, 0x90              /* dec %eax; nop */
        movl    %eax, OBS(0)
        RECORD_SEGMENT cs, 1
        BACK

/* SYSCALL from compatibility mode (AMD: to IA32_CSTAR; Intel: #UD). */
        .globl  compat_syscall_probe, compat_syscall_instruction, compat_after_syscall
compat_syscall_probe:
        movl    $USER_DS, %eax
        movw    %ax, %ds
        movw    %ax, %es
compat_syscall_instruction:
        syscall
compat_after_syscall:
        RECORD_SEGMENT cs, 7
        RECORD_SEGMENT ss, 8
        movl    $1, OBS(9)
        BACK

/* SYSENTER from compatibility mode (Intel: to IA32_SYSENTER_EIP in 64-bit mode; AMD: #UD). */
        .globl  compat_sysenter_probe, compat_sysenter_instruction, compat_after_sysenter
compat_sysenter_probe:
        movl    $USER_DS, %eax
        movw    %ax, %ds
        movw    %ax, %es
        movl    %esp, OBS(11)
compat_sysenter_instruction:
        sysenter
compat_after_sysenter:
        RECORD_SEGMENT cs, 12
        RECORD_SEGMENT ss, 13
        movl    %esp, OBS(14)
        movl    $1, OBS(15)
        BACK

/* INT n from compatibility mode, back by IRETQ to the 32-bit CS. */
        .globl  compat_int_probe, compat_int_instruction
compat_int_probe:
        movl    $USER_DS, %eax
        movw    %ax, %ds
        movw    %ax, %es
compat_int_instruction:
        int     $0x40
        RECORD_SEGMENT cs, 16
        movl    $1, OBS(17)
        BACK

/* Far CALL through a 64-bit call gate from compatibility mode at CPL3. */
        .globl  compat_callgate_probe, compat_callgate_instruction
compat_callgate_probe:
        movl    $USER_DS, %eax
        movw    %ax, %ds
        movw    %ax, %es
compat_callgate_instruction:
        lcalll  *compat_far_callgate
        RECORD_SEGMENT cs, 22
        movl    $1, OBS(23)
        BACK
