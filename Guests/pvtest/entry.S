/* pvtest's low-level helpers; see guest.h. */
        .text
        .code64

/* uint64_t pt_call_user(void (*fn)(void), uint64_t stack_top) */
        .globl  pt_call_user
pt_call_user:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, pt_saved_rsp(%rip)
        subq    $8, %rsi                        /* as if called */
        pushq   $0x1b                           /* SS */
        pushq   %rsi                            /* RSP */
        pushq   $0x3002                         /* RFLAGS: IOPL 3, IF = 0 */
        pushq   $0x23                           /* CS */
        pushq   %rdi                            /* RIP */
        iretq

/* void pt_return(uint64_t value), at CPL3 */
        .globl  pt_return
pt_return:
        movq    %rdi, %rax
        int3
1:      jmp     1b

/* int3 from pt_return (vector 3, DPL3 gate): back onto the saved kernel stack (the frame the
 * CPU pushed on TSS.RSP0 is dropped), return from pt_call_user with RAX. */
        .globl  pt_syscall_entry
pt_syscall_entry:
        movq    pt_saved_rsp(%rip), %rsp
        movw    $0x10, %cx
        movw    %cx, %ds
        movw    %cx, %es
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret

        .data
        .balign 8
pt_saved_rsp:   .quad 0
