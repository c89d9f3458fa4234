/*
 * GuestKit's interrupt entry: 256 stubs (one per IDT vector, 16 bytes apart) and the common
 * path that saves the caller-saved registers, calls the handler registered for the vector
 * (`gk_vector_handlers[vector]`, a C-ABI function taking the frame pointer), sends the local
 * APIC an EOI for vectors 32-254, and returns with iretq.
 *
 * Kept short on purpose: on KVM's PVM backend every CPL0 instruction is emulated (~2.6 us),
 * so only the nine caller-saved registers are saved (the handler preserves the rest, as the
 * SysV ABI requires). Frame, from the pointer passed to the handler (8-byte slots):
 *   0 r11, 1 r10, 2 r9, 3 r8, 4 rdi, 5 rsi, 6 rdx, 7 rcx, 8 rax, 9 vector, 10 error code,
 *   11 rip, 12 cs, 13 rflags, 14 rsp, 15 ss
 * In 64-bit mode the CPU aligns RSP to 16 before pushing its frame, so RSP is 16-aligned at
 * the call (5 + 2 + 9 slots = 16).
 */
#include "frame.h"
#define APIC_EOI        0xfee000b0

        .text
        .code64

/* Vectors whose exception pushes an error code: 8, 10-14, 17, 21, 29, 30. */
.macro  STUB vector
        .balign 16
        .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
        .else
        pushq   $0
        .endif
        pushq   $\vector
        jmp     gk_isr_common
.endm

        .balign 16
        .globl  gk_isr_stubs
gk_isr_stubs:
        .altmacro
        .set    v, 0
        .rept   256
        STUB    %v
        .set    v, v + 1
        .endr
        .noaltmacro

gk_isr_common:
        GK_SAVE_SCRATCH
        movq    72(%rsp), %rax                  /* vector */
        movq    %rsp, %rdi
        movq    gk_vector_handlers(,%rax,8), %rax
        testq   %rax, %rax
        jz      2f
        cld
        call    *%rax
        movq    72(%rsp), %rax
        subq    $32, %rax                       /* vectors 32-254 (unsigned: 0-222) get an EOI */
        cmpq    $(255 - 32), %rax
        jae     1f
        movl    $APIC_EOI, %eax
        movl    $0, (%rax)
1:      GK_RESTORE_SCRATCH
        iretq
2:      cld
        call    guestkit_unhandled_vector       /* prints and ends the guest */
3:      cli
        hlt
        jmp     3b

        .bss
        .balign 4096
        .globl  gk_idt
gk_idt:
        .skip   4096
        .globl  gk_vector_handlers
gk_vector_handlers:
        .skip   256 * 8
