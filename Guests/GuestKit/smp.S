/*
 * Application-processor start-up. `SMP.start` (SMP.swift) copies the trampoline below to
 * GK_TRAMPOLINE_BASE (0x70000, SIPI vector 0x70), writes the BSP's EFER into it, and sends
 * INIT, SIPI, SIPI. Each AP then starts in real mode at 0x7000:0000 and goes
 *   real mode -> 32-bit protected mode (GDT 0x38) -> long mode (same PML4 and GDT as the BSP)
 * takes the next CPU index with `lock xadd`, switches to its own stack and calls the Swift
 * entry `guestkit_ap_entry(index)`. Nothing here depends on where it runs except the
 * trampoline's self-relative offsets, which are fixed at GK_TRAMPOLINE_BASE.
 */
#define GK_MAX_CPUS             32
#define GK_AP_STACK_SIZE        16384
#define GK_TRAMPOLINE_BASE      0x70000

#define KERNEL_CS               0x08
#define KERNEL_DS               0x10
#define KERNEL_CS32             0x38

#define CR0_PE                  (1 << 0)
#define CR0_MP                  (1 << 1)
#define CR0_EM                  (1 << 2)
#define CR0_PG                  (1 << 31)
#define CR4_PAE                 (1 << 5)
#define CR4_OSFXSR              (1 << 9)
#define CR4_OSXMMEXCPT          (1 << 10)
#define MSR_EFER                0xC0000080

#define TR(label)               (GK_TRAMPOLINE_BASE + ((label) - gk_trampoline_start))

        .text
        .code16
        .globl  gk_trampoline_start, gk_trampoline_end, gk_trampoline_efer
gk_trampoline_start:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        lgdtl   (tr_gdtr - gk_trampoline_start)
        movl    %cr0, %eax
        orl     $CR0_PE, %eax
        movl    %eax, %cr0
        ljmpl   $KERNEL_CS32, $TR(tr_protected)

        .code32
tr_protected:
        movw    $KERNEL_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    %cr4, %eax
        orl     $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
        movl    %eax, %cr4
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    $MSR_EFER, %ecx
        movl    TR(gk_trampoline_efer), %eax    /* LME, and NXE as the BSP has it */
        xorl    %edx, %edx
        wrmsr
        movl    %cr0, %eax
        andl    $~CR0_EM, %eax
        orl     $(CR0_PG | CR0_PE | CR0_MP), %eax
        movl    %eax, %cr0
        ljmpl   $KERNEL_CS, $gk_ap_long_mode

        .balign 8
        .word   0
tr_gdtr:                                        /* the BSP's GDT (32-bit base, below 4 GiB) */
        .word   gdt_limit
        .long   gdt
gk_trampoline_efer:
        .long   0
gk_trampoline_end:

/* 64-bit, in the image (not copied). */
        .code64
gk_ap_long_mode:
        lgdt    gdt_pointer(%rip)               /* full 64-bit GDTR */
        movw    $KERNEL_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        movl    $1, %eax
        lock xaddl %eax, gk_ap_next_index(%rip) /* this AP's index: 1, 2, ... */
        cmpl    $GK_MAX_CPUS, %eax
        jae     9f
        movl    %eax, %edi
        imulq   $GK_AP_STACK_SIZE, %rax, %rsp   /* stack index - 1 ends at base + index * size */
        leaq    gk_ap_stacks(%rip), %rax
        addq    %rax, %rsp
        fninit
        call    guestkit_ap_entry               /* never returns */
9:      cli                                     /* more CPUs than GK_MAX_CPUS: park */
        hlt
        jmp     9b

        .data
        .balign 4
        .globl  gk_ap_next_index
gk_ap_next_index:
        .long   1
        .globl  gk_console_lock
gk_console_lock:
        .long   0
        .balign 8
        .globl  gk_cpus_online
gk_cpus_online:                                 /* the BSP, plus each AP in guestkit_ap_entry */
        .quad   1

        .bss
        .balign 64
        .globl  gk_percpu
gk_percpu:
        .skip   64 * GK_MAX_CPUS

        .section .noinit, "aw", @nobits
        .balign 16
        .globl  gk_ap_stacks
gk_ap_stacks:
        .skip   GK_AP_STACK_SIZE * (GK_MAX_CPUS - 1)
