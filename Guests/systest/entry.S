/*
 * systest's low-level parts: exception entry stubs for the IDT, probes that may fault (each
 * names its recovery point in `probe_fixup` before the faulting instruction, as Linux's
 * exception tables do), the SYSCALL entry, and a GDT with a 64-bit TSS.
 */
        .text
        .code64

/* Exception entry: push a dummy error code where the CPU pushes none, then the vector. */
.macro  EXC vector, has_error
        .globl  exc_\vector
exc_\vector:
        .if \has_error == 0
        pushq   $0
        .endif
        pushq   $\vector
        jmp     exc_common
.endm

        EXC 0,0;  EXC 1,0;  EXC 2,0;  EXC 3,0;  EXC 4,0;  EXC 5,0;  EXC 6,0;  EXC 7,0
        EXC 8,1;  EXC 9,0;  EXC 10,1; EXC 11,1; EXC 12,1; EXC 13,1; EXC 14,1; EXC 15,0
        EXC 16,0; EXC 17,1; EXC 18,0; EXC 19,0; EXC 20,0; EXC 21,1
        EXC 64,0
        EXC 65,0

/* Frame for systest_exception: r15 ... rax (15 registers), vector, error code, then the CPU's
 * RIP, CS, RFLAGS, RSP, SS. */
exc_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, %rdi
        movq    %rsp, %rbx
        andq    $-16, %rsp
        call    systest_exception
        movq    %rbx, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rbp
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rbx
        popq    %rax
        addq    $16, %rsp
        iretq

        .globl  exception_stubs
        .section .rodata
        .balign 8
exception_stubs:
        .quad   exc_0, exc_1, exc_2, exc_3, exc_4, exc_5, exc_6, exc_7
        .quad   exc_8, exc_9, exc_10, exc_11, exc_12, exc_13, exc_14, exc_15
        .quad   exc_16, exc_17, exc_18, exc_19, exc_20, exc_21
        .globl  exc_64_address, exc_65_address
exc_64_address: .quad exc_64
exc_65_address: .quad exc_65
        .text

/* Probes: return the value, or all ones (and the handler records the fault). */
.macro  SET_FIXUP label
        leaq    \label(%rip), %rax
        movq    %rax, probe_fixup(%rip)
.endm

        .globl  probe_read
probe_read:                             /* uint64_t probe_read(uint64_t address) */
        SET_FIXUP 9f
        movq    (%rdi), %rax
        movq    $0, probe_fixup(%rip)
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_write
probe_write:                            /* uint64_t probe_write(uint64_t address, uint64_t value) */
        SET_FIXUP 9f
        movq    %rsi, (%rdi)
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_call
probe_call:                             /* uint64_t probe_call(uint64_t address): call it */
        SET_FIXUP 9f
        movq    %rsp, probe_saved_rsp(%rip)
        call    *%rdi
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    probe_saved_rsp(%rip), %rsp
        movq    $-1, %rax
        ret

        .globl  probe_divide_by_zero
probe_divide_by_zero:
        SET_FIXUP 9f
        xorl    %ecx, %ecx
        movl    $1, %eax
        xorl    %edx, %edx
        .globl  probe_divide_instruction
probe_divide_instruction:
        divq    %rcx
        movq    $0, probe_fixup(%rip)
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_ud2
probe_ud2:
        SET_FIXUP 9f
        .globl  probe_ud2_instruction
probe_ud2_instruction:
        ud2
9:      movq    $-1, %rax
        ret

        .globl  probe_int3
probe_int3:                             /* a trap: execution continues after int3 */
        int3
        .globl  probe_int3_next
probe_int3_next:
        ret

        .globl  probe_wrmsr
probe_wrmsr:                            /* uint64_t probe_wrmsr(uint32_t msr, uint64_t value) */
        SET_FIXUP 9f
        movl    %edi, %ecx
        movl    %esi, %eax
        movq    %rsi, %rdx
        shrq    $32, %rdx
        wrmsr
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_int_0x40
probe_int_0x40:                         /* int $0x40: a DPL3 gate; 0, or -1 if it faulted */
        SET_FIXUP 9f
        .globl  probe_int_0x40_instruction
probe_int_0x40_instruction:
        int     $0x40
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_int_0x41
probe_int_0x41:                         /* int $0x41: a DPL0 gate; from CPL3 it must #GP */
        SET_FIXUP 9f
        int     $0x41
        movq    $0, probe_fixup(%rip)
        xorl    %eax, %eax
        ret
9:      movq    $-1, %rax
        ret

        .globl  probe_syscall
probe_syscall:                          /* uint64_t probe_syscall(void): from CPL3 */
        pushq   %rbx
        syscall
        popq    %rbx
        ret

/* SYSCALL lands here at CPL0 (on the caller's stack; this test needs no stack switch):
 * record CPL and the saved RFLAGS, answer 0x5ca11, return with SYSRETQ. */
        .globl  syscall_entry
syscall_entry:
        movq    %cs, %rax
        movq    %rax, syscall_seen_cs(%rip)
        movq    %r11, syscall_saved_rflags(%rip)
        movq    %rcx, syscall_saved_rip(%rip)
        movq    $0x5ca11, %rax
        cmpq    $0, syscall_return_with_iret(%rip)
        jne     1f
        sysretq
1:      /* Return the way SYSRETQ would, through an IRETQ frame (for hosts without SYSRET). */
        movq    %rsp, %rdx
        pushq   $0x1b                           /* SS */
        pushq   %rdx                            /* RSP */
        pushq   %r11                            /* RFLAGS */
        pushq   $0x23                           /* CS */
        pushq   %rcx                            /* RIP */
        iretq

        .data
        .balign 8
        .globl  probe_fixup, syscall_seen_cs, syscall_saved_rflags, syscall_saved_rip
        .globl  syscall_return_with_iret
syscall_return_with_iret: .quad 0
probe_fixup:            .quad 0
probe_saved_rsp:        .quad 0
syscall_seen_cs:        .quad 0
syscall_saved_rflags:   .quad 0
syscall_saved_rip:      .quad 0
