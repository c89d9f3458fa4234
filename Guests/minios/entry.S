/*
 * minios's low-level entries. Kernel code always runs with IF = 0 (interrupt gates, SFMASK);
 * user tasks run at CPL3 with IF = 1 and IOPL 0.
 */

        .text
        .code64

/*
 * System calls are `int3` from CPL3 (vector 3, a DPL3 interrupt gate): the CPU switches to the
 * task's kernel stack from TSS.RSP0 and pushes the IRETQ frame, IF = 0. Not SYSCALL: on KVM's
 * PVM backend the SYSCALL target does not run with kernel privilege (port I/O and WRMSR there
 * raise #GP), and `int n` from CPL3 is #UD there; `int3` is delivered properly everywhere.
 * Arguments: rax = number, rdi, rsi, rdx; result in rax. The user stub treats the call as a
 * function call, so only RAX matters on return; callee-saved registers are preserved by the
 * C ABI.
 */
        .globl  mos_syscall_entry
mos_syscall_entry:
        subq    $8, %rsp                        /* 16-byte alignment at the call */
        movq    %rdx, %rcx
        movq    %rsi, %rdx
        movq    %rdi, %rsi
        movq    %rax, %rdi
        cld
        call    minios_syscall
        addq    $8, %rsp
        iretq

/* void mos_switch(uint64_t *save, uint64_t next) */
        .globl  mos_switch
mos_switch:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret

/* A new task's first switch returns here: R12 = its argument, an IRETQ frame above. */
        .globl  mos_task_start
mos_task_start:
        subq    $8, %rsp
        call    minios_enter_user               /* PV: unmask events */
        addq    $8, %rsp
        movq    %r12, %rdi
        iretq

/* User side. int64_t mos_sys(nr, a1, a2, a3) */
        .globl  mos_sys
mos_sys:
        movq    %rdi, %rax
        movq    %rsi, %rdi
        movq    %rdx, %rsi
        movq    %rcx, %rdx
        int3
        ret

/* User side. uint64_t mos_spin(uint64_t n, uint64_t state), n >= 1 */
        .globl  mos_spin
mos_spin:
        movq    %rsi, %rax
1:      addq    %rdi, %rax
        rorq    $7, %rax
        decq    %rdi
        jnz     1b
        ret

        .data
        .balign 8
        .globl  mos_kernel_rsp
mos_kernel_rsp: .quad 0
