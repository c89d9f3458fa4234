/* The interrupt frame GuestKit's entry stubs build (isr.S, pv.S), from the top of the stack:
 * r11 r10 r9 r8 rdi rsi rdx rcx rax | vector error | rip cs rflags rsp ss.
 * The stubs save only the registers the C/Swift calling convention lets a callee clobber;
 * InterruptFrame in Interrupts.swift reads the same layout. */
#ifndef GUESTKIT_FRAME_H
#define GUESTKIT_FRAME_H

.macro GK_SAVE_SCRATCH
        pushq   %rax
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
.endm

/* Restores what GK_SAVE_SCRATCH saved and drops the vector and error code. */
.macro GK_RESTORE_SCRATCH
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rax
        addq    $16, %rsp
.endm

#endif
