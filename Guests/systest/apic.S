/*
 * systest's interrupt handlers for APICChecks.swift (issue 15 items 5 and 9): an NMI handler
 * that counts NMIs, notes one arriving while another is being handled (which the blocking from
 * delivery to IRET forbids) and, when asked, sends this CPU two more NMIs through the local
 * APIC's ICR before its IRET; and a fixed-IPI handler that counts and sends the EOI.
 */
        .text
        .code64

/* Local APIC registers (xAPIC MMIO). */
        .set    APIC_BASE, 0xfee00000
        .set    APIC_EOI, 0xb0
        .set    APIC_ICR_LOW, 0x300
        .set    APIC_ICR_HIGH, 0x310
        /* NMI delivery (100b), physical destination, level assert, edge. */
        .set    ICR_NMI, 0x4400

        .globl  apic_nmi_handler
apic_nmi_handler:
        pushq   %rax
        pushq   %rcx
        lock incq apic_nmi_depth(%rip)
        cmpq    $1, apic_nmi_depth(%rip)
        jbe     1f
        movq    $1, apic_nmi_nested(%rip)      /* an NMI inside an NMI: not blocked */
1:      lock incq apic_nmi_count(%rip)
        cmpq    $0, apic_nmi_resend(%rip)
        je      3f
        movq    $0, apic_nmi_resend(%rip)
        movl    $APIC_BASE, %eax
        movl    apic_nmi_icr_high(%rip), %ecx
        movl    %ecx, APIC_ICR_HIGH(%rax)
        movl    $ICR_NMI, APIC_ICR_LOW(%rax)   /* two NMIs to this CPU: held, then collapsed */
        movl    %ecx, APIC_ICR_HIGH(%rax)
        movl    $ICR_NMI, APIC_ICR_LOW(%rax)
        /* Give a nested NMI every chance to arrive before the IRET. */
        movl    $2000, %ecx
2:      pause
        decl    %ecx
        jnz     2b
3:      lock decq apic_nmi_depth(%rip)
        popq    %rcx
        popq    %rax
        iretq

        .globl  apic_fixed_handler
apic_fixed_handler:
        pushq   %rax
        lock incq apic_fixed_count(%rip)
        movl    $APIC_BASE, %eax
        movl    $0, APIC_EOI(%rax)
        popq    %rax
        iretq

        .data
        .balign 8
        .globl  apic_nmi_count, apic_nmi_depth, apic_nmi_nested, apic_nmi_resend, apic_nmi_icr_high
        .globl  apic_fixed_count
apic_nmi_count:     .quad 0
apic_nmi_depth:     .quad 0
apic_nmi_nested:    .quad 0
apic_nmi_resend:    .quad 0
apic_nmi_icr_high:  .quad 0
apic_fixed_count:   .quad 0
