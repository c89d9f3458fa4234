/*
 * sensitive's probes: Robin and Irvine's sensitive-but-unprivileged instructions, one after
 * another, run once at CPL0 and once at CPL3 by the same code (`sn_probes`), each recording
 * what it saw in an observation block (slot numbers in guest.h). Faults resume at `sn_fixup`
 * (Sensitive.swift's handler); INT n, INT3 and INTO are traps and return after themselves.
 * INTO and PUSH/POP of DS, ES and SS do not exist in 64-bit mode: they run in a short excursion
 * into compatibility mode (a 32-bit code segment at the same CPL: 0x38 from GuestKit's GDT at
 * CPL0, 0x43 added by Sensitive.swift at CPL3).
 */

#define KERNEL_CS       0x08
#define KERNEL_DS       0x10
#define USER_DS         0x1b
#define USER_CS         0x23
#define KERNEL_CS32     0x38
#define USER_CS32       0x43
#define NONE            0xffff

#define SLOT(n)         (8 * (n))

        .data
        .balign 8
        .globl  sn_fixup, sn_vector, sn_error, sn_cs, sn_user_obs
sn_fixup:       .quad 0         /* where a fault resumes (0: none expected) */
sn_vector:      .quad 0         /* the last vector the handler saw */
sn_error:       .quad 0         /* its error code */
sn_cs:          .quad 0         /* the CS it interrupted */
sn_user_obs:    .quad 0         /* the observation block sn_run_user's probes fill */
sn_obs_ptr:     .quad 0         /* the block sn_probes fills now (for 32-bit code) */
sn_kernel_rsp:  .quad 0         /* sn_run_user's stack, for sn_user_return */
sn_far_ptr:     .long 0         /* m16:32 far pointers */
                .word 0
                .word 0
sn_back_ptr:    .long 0
                .word 0
                .word 0

        .bss
        .balign 16
sn_user_stack:  .skip 16384
        .globl  sn_user_stack_top
sn_user_stack_top:
        .balign 16
sn_kernel_stack: .skip 16384
        .globl  sn_kernel_stack_top
sn_kernel_stack_top:

        .text
        .code64

.macro  EXPECT_FAULT label
        movq    $NONE, sn_vector(%rip)
        movq    $0, sn_error(%rip)
        leaq    \label(%rip), %rax
        movq    %rax, sn_fixup(%rip)
.endm

.macro  RECORD vector_slot, second_slot, second
        movq    sn_vector(%rip), %rax
        movq    %rax, SLOT(\vector_slot)(%r15)
        movq    \second(%rip), %rax
        movq    %rax, SLOT(\second_slot)(%r15)
        movq    $0, sn_fixup(%rip)
.endm

/* void sn_probes(uint64_t *obs): every probe at the caller's CPL; `obs` must be zeroed and below 4 GiB. */
        .globl  sn_probes
sn_probes:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rdi, %r15
        movq    %rdi, sn_obs_ptr(%rip)

        /* MOV from CS: the RPL is the CPL. */
        xorl    %eax, %eax
        movw    %cs, %ax
        movq    %rax, SLOT(16)(%r15)
        movq    %rax, %r14

        /* The descriptor-table registers, LDTR, TR and the machine status word. */
        sgdt    SLOT(0)(%r15)
        sidt    SLOT(2)(%r15)
        sldt    SLOT(4)(%r15)
        str     SLOT(5)(%r15)
        smsw    SLOT(6)(%r15)

        /* PUSHF, then POPF asking for IF = 1 and IOPL = 3; then the flags are put back. */
        pushfq
        popq    %rbx
        movq    %rbx, SLOT(7)(%r15)
        movq    %rbx, %rax
        orq     $0x3200, %rax
        pushq   %rax
        popfq
        pushfq
        popq    SLOT(8)(%r15)
        pushq   %rbx
        popfq

        /* LAR, LSL and VERR of the kernel code segment, VERW of the user data segment. */
        movl    $KERNEL_CS, %ecx
        xorl    %eax, %eax
        lar     %cx, %eax
        setz    %dl
        movzbl  %dl, %edx
        movq    %rax, SLOT(9)(%r15)
        movq    %rdx, SLOT(10)(%r15)
        xorl    %eax, %eax
        lsl     %cx, %eax
        setz    %dl
        movzbl  %dl, %edx
        movq    %rax, SLOT(11)(%r15)
        movq    %rdx, SLOT(12)(%r15)
        verr    %cx
        setz    %dl
        movzbl  %dl, %edx
        movq    %rdx, SLOT(13)(%r15)
        movl    $USER_DS, %ecx
        verw    %cx
        setz    %dl
        movzbl  %dl, %edx
        movq    %rdx, SLOT(14)(%r15)

        /* PUSH FS (some CPUs write only 16 bits: the rest is masked off) and POP FS. */
        pushq   %fs
        popq    %rax
        movzwl  %ax, %eax
        movq    %rax, SLOT(15)(%r15)
        pushq   %fs
        popq    %fs

        /* MOV to DS of the kernel data segment (DPL 0), then DS back as it was. */
        movw    %ds, %bx
        EXPECT_FAULT 1f
        movl    $KERNEL_DS, %eax
        movw    %ax, %ds
1:      movw    %bx, %ds
        RECORD  17, 18, sn_error

        /* Far CALL to this CS (and far RET back), far CALL to the kernel code segment. */
        leaq    sn_far_target_same(%rip), %rax
        movl    %eax, sn_far_ptr(%rip)
        movw    %r14w, sn_far_ptr+4(%rip)
        lcall   *sn_far_ptr(%rip)
        movq    $1, SLOT(20)(%r15)
        leaq    sn_far_target_kernel(%rip), %rax
        movl    %eax, sn_far_ptr(%rip)
        movw    $KERNEL_CS, sn_far_ptr+4(%rip)
        EXPECT_FAULT 2f
        lcall   *sn_far_ptr(%rip)
2:      RECORD  21, 22, sn_error

        /* Far JMP to this CS. */
        leaq    3f(%rip), %rax
        movl    %eax, sn_far_ptr(%rip)
        movw    %r14w, sn_far_ptr+4(%rip)
        ljmp    *sn_far_ptr(%rip)
        ud2
3:      movq    $1, SLOT(24)(%r15)

        /* INT 0x80 and INT3 through DPL 3 gates, INT 0x82 through a DPL 0 gate. */
        movq    $NONE, sn_vector(%rip)
        int     $0x80
        RECORD  25, 26, sn_cs
        movq    $NONE, sn_vector(%rip)
        int3
        RECORD  27, 28, sn_cs
        EXPECT_FAULT 4f
        int     $0x82
4:      RECORD  29, 30, sn_error

        /* Compatibility mode at this CPL: far RET into it, far JMP out of it. */
        movl    $KERNEL_CS32, %ecx
        movl    $USER_CS32, %edx
        cmpl    $KERNEL_CS, %r14d
        cmovne  %edx, %ecx
        leaq    5f(%rip), %rax
        movl    %eax, sn_back_ptr(%rip)
        movw    %r14w, sn_back_ptr+4(%rip)
        pushq   %rcx
        leaq    sn_compat(%rip), %rax
        pushq   %rax
        lretq
5:      popq    %r15                    /* (upper halves are undefined after 32-bit code) */
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret

sn_far_target_same:
        movq    $1, SLOT(19)(%r15)
        lret
sn_far_target_kernel:
        movq    $1, SLOT(23)(%r15)
        lret

        .code32
sn_compat:
        movl    sn_obs_ptr, %ebx
        pushl   %ds
        popl    %ds
        pushl   %es
        popl    %es
        pushl   %ss
        popl    %ss
        pushl   %cs
        popl    %eax
        movzwl  %ax, %eax
        movl    %eax, SLOT(31)(%ebx)
        pushl   %ds
        popl    %eax
        movzwl  %ax, %eax
        movl    %eax, SLOT(32)(%ebx)
        /* INTO with OF set (a #OF trap), then with OF clear (nothing). */
        movl    $NONE, sn_vector
        movl    $0x7fffffff, %eax
        addl    $1, %eax
        into
        movl    sn_vector, %eax
        movl    %eax, SLOT(33)(%ebx)
        movl    sn_cs, %eax
        movl    %eax, SLOT(34)(%ebx)
        movl    $NONE, sn_vector
        xorl    %eax, %eax
        into
        movl    sn_vector, %eax
        movl    %eax, SLOT(35)(%ebx)
        ljmp    *sn_back_ptr

        .code64
/* void sn_run_user(void): sn_probes(sn_user_obs) at CPL3 with IOPL 0 and IF 0; back at CPL0
 * through INT 0x81 (sn_user_return). */
        .globl  sn_run_user
sn_run_user:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, sn_kernel_rsp(%rip)
        movw    $USER_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        pushq   $USER_DS                        /* SS */
        leaq    sn_user_stack_top(%rip), %rax
        pushq   %rax                            /* RSP */
        pushq   $0x2                            /* RFLAGS: IOPL 0, IF 0 */
        pushq   $USER_CS
        leaq    sn_user_entry(%rip), %rax
        pushq   %rax
        iretq
sn_user_entry:
        movq    sn_user_obs(%rip), %rdi
        call    sn_probes
        int     $0x81
        ud2

/* INT 0x81's gate (DPL 3): back on sn_run_user's stack at CPL0 with the kernel's data segments. */
        .globl  sn_user_return
sn_user_return:
        movw    $KERNEL_DS, %ax
        movw    %ax, %ss
        movw    %ax, %ds
        movw    %ax, %es
        movq    sn_kernel_rsp(%rip), %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret
