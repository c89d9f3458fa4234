/*
 * GuestKit's paravirtual glue (see PV.swift):
 *  - `gk_hypercall5(nr, a1, a2, a3, a4, a5)`: moves the C arguments into the hypercall
 *    registers (rdi, rsi, rdx, r10, r8) and calls stub `nr` of the hypercall page Visor
 *    filled. The stub's own instruction is Visor's business; GuestKit never hard-codes it.
 *    The stub clobbers rax (the result) and the flags only. Numbers past the page's stubs
 *    give -ENOSYS without a trap.
 *  - `gk_upcall_entry`: the IDT entry of the event upcall vector. Same frame as isr.S, but no
 *    local APIC EOI: Visor injects the upcall directly, not through the APIC (PV.swift sends
 *    one only when asked to, `pv_eoi=on`).
 *  - `gk_pv_ap_start`: where a vCPU started with `vcpu_op(initialise, up)` begins, in 64-bit
 *    mode with RSP at its stack top and RDI = its CPU index.
 *  - The hypercall page, the shared-info page, and per-port and per-CPU tables.
 */
#include "frame.h"
#define HYPERCALL_COUNT 64
#define ENOSYS          38

        .text
        .code64

        .globl  gk_hypercall5
        .type   gk_hypercall5, @function
gk_hypercall5:
        cmpq    $HYPERCALL_COUNT, %rdi
        jae     1f
        movq    %rdi, %rax
        shlq    $5, %rax                        /* 32 bytes per stub */
        leaq    gk_hypercall_page(%rip), %r11
        addq    %r11, %rax
        movq    %rsi, %rdi                      /* a1 */
        movq    %rdx, %rsi                      /* a2 */
        movq    %rcx, %rdx                      /* a3 */
        movq    %r8, %r10                       /* a4 */
        movq    %r9, %r8                        /* a5 */
        call    *%rax
        ret
1:      movq    $-ENOSYS, %rax
        ret
        .size   gk_hypercall5, . - gk_hypercall5

/* The frame of frame.h, as isr.S builds it. */
        .globl  gk_upcall_entry
        .type   gk_upcall_entry, @function
gk_upcall_entry:
        pushq   $0                              /* error code */
        pushq   $0xf0                           /* vector (PV.upcallVector) */
        GK_SAVE_SCRATCH
        movq    %rsp, %rdi
        cld
        call    guestkit_upcall
        GK_RESTORE_SCRATCH
        iretq
        .size   gk_upcall_entry, . - gk_upcall_entry

        .globl  gk_pv_ap_start
        .type   gk_pv_ap_start, @function
gk_pv_ap_start:                                 /* rdi = CPU index, rsp = its stack top */
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        call    guestkit_pv_ap_entry            /* never returns */
1:      cli
        hlt
        jmp     1b
        .size   gk_pv_ap_start, . - gk_pv_ap_start

        .bss
        .balign 4096
        .globl  gk_hypercall_page, gk_shared_info
gk_hypercall_page:
        .skip   4096
gk_shared_info:
        .skip   4096
        .balign 8
        .globl  gk_port_handlers, gk_port_cpu, gk_pv_timer_port, gk_pv_console_buffer, gk_pv_console_length
gk_port_handlers:                               /* one handler per event channel port */
        .skip   8 * 1024
gk_port_cpu:                                    /* the CPU each port is bound to */
        .skip   1024
gk_pv_timer_port:                               /* per CPU: its VIRQ_TIMER port */
        .skip   4 * 32
gk_pv_console_length:                           /* per CPU: bytes in its console buffer */
        .skip   8 * 32
gk_pv_console_buffer:                           /* per CPU: 256 bytes of console output */
        .skip   256 * 32
