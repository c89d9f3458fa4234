/* GuestKit: load a GDT and the TSS at selector 0x28 (see GuestKit.installTaskState). */
        .text
        .code64

/* void gk_load_gdt_and_tss(const void *gdtr): LGDT, reload CS with a far return and the data
 * segments from the new table, then LTR 0x28. */
        .globl  gk_load_gdt_and_tss
        .type   gk_load_gdt_and_tss, @function
gk_load_gdt_and_tss:
        lgdt    (%rdi)
        pushq   $0x08
        leaq    1f(%rip), %rax
        pushq   %rax
        lretq
1:      movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $0x28, %ax
        ltr     %ax
        ret
        .size   gk_load_gdt_and_tss, . - gk_load_gdt_and_tss
