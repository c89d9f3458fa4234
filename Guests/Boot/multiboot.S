/*
 * Visor guest boot stub: multiboot v1 header, 32-bit protected-mode entry,
 * switch to long mode with an identity map of the first 4 GiB, then call
 * GuestKit's Swift entry point `guestkit_start(magic, info)`.
 *
 * Assembled by clang as an x86-64 ELF object; the 32-bit part is `.code32`.
 * The identity map, GDT and GDTR are built at assembly time, so at run time
 * the stub executes only a few dozen instructions (CPL0 code is slow on
 * /dev/kvm's PVM backend and in software engines).
 *
 * State assumed at entry (multiboot v1, section 3.2): EAX = 0x2BADB002,
 * EBX = physical address of the multiboot info, CS = any flat 32-bit code
 * segment, DS/ES/SS = flat 32-bit data, CR0.PE = 1, CR0.PG = 0, interrupts
 * off. Nothing else is assumed: ESP, GDTR and IDTR may be anything.
 */

#define MB_MAGIC        0x1BADB002
#define MB_FLAGS        0x00000003      /* bit 0: page-align modules, bit 1: memory info */

#define KERNEL_CS       0x08
#define KERNEL_DS       0x10
#define USER_DS         0x1b            /* GDT entry 3, RPL 3 */
#define USER_CS         0x23            /* GDT entry 4, RPL 3 */

#define PTE_P           0x001
#define PTE_RW          0x002
#define PTE_US          0x004
#define PTE_PS          0x080           /* 2 MiB page in a page directory */
#define PTE_FLAGS       (PTE_P | PTE_RW | PTE_US)

#define CR0_PE          (1 << 0)
#define CR0_MP          (1 << 1)
#define CR0_EM          (1 << 2)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)
#define CR4_OSFXSR      (1 << 9)
#define CR4_OSXMMEXCPT  (1 << 10)
#define MSR_EFER        0xC0000080
#define EFER_LME        (1 << 8)
#define EFER_NXE        (1 << 11)

/* ------------------------------------------------------------------ header */
        .section .multiboot, "a"
        .balign 4
        .globl  multiboot_header
multiboot_header:
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

/* ------------------------------------------------------------- 32-bit entry */
        .section .text.boot, "ax"
        .code32
        .globl  _start
        .type   _start, @function
_start:
        cli
        cld
        movl    %eax, %ebp                      /* keep magic and info pointer */
        movl    %ebx, %esi
        movl    $boot_stack_top, %esp

        lgdt    gdt_pointer
        movw    $KERNEL_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs

        /* Zero .bss (Swift globals). Stacks and the heap live in .noinit. */
        movl    $__bss_start, %edi
        movl    $__bss_end, %ecx
        subl    %edi, %ecx
        xorl    %eax, %eax
        rep stosb

        /* PAE paging with the static identity map. */
        movl    %cr4, %eax
        orl     $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
        movl    %eax, %cr4
        movl    $pml4, %eax
        movl    %eax, %cr3

        /* EFER.LME, plus EFER.NXE when CPUID.80000001h:EDX[20] says NX exists. */
        xorl    %edi, %edi
        movl    $0x80000000, %eax
        cpuid
        cmpl    $0x80000001, %eax
        jb      1f
        movl    $0x80000001, %eax
        cpuid
        testl   $(1 << 20), %edx
        jz      1f
        movl    $EFER_NXE, %edi
1:      movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        orl     %edi, %eax
        wrmsr

        /* Paging on (long mode becomes active), x87 native, no emulation. */
        movl    %cr0, %eax
        andl    $~CR0_EM, %eax
        orl     $(CR0_PG | CR0_PE | CR0_MP), %eax
        movl    %eax, %cr0

        ljmp    $KERNEL_CS, $long_mode_entry

/* ------------------------------------------------------------- 64-bit entry */
        .code64
long_mode_entry:
        movw    $KERNEL_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        movq    $boot_stack_top, %rsp           /* 16-byte aligned at the calls below (SysV ABI) */

        /* SSE for Swift: CR0.EM = 0, CR0.MP = 1; CR4.OSFXSR | OSXMMEXCPT. */
        movq    %cr0, %rax
        andq    $~CR0_EM, %rax
        orq     $CR0_MP, %rax
        movq    %rax, %cr0
        movq    %cr4, %rax
        orq     $(CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
        movq    %rax, %cr4
        fninit

        movl    %ebp, %edi                      /* magic (zero-extended) */
        movl    %esi, %esi                      /* info pointer (zero-extended) */
        xorl    %ebp, %ebp
        call    guestkit_start
        xorl    %edi, %edi                      /* returned: exit with status 0 */
        call    guestkit_exit
2:      cli
        hlt
        jmp     2b
        .size   _start, . - _start

/*
 * void guestkit_enter_user(void (*entry)(void), uint64_t interruptible) __attribute__((noreturn))
 * iretq to `entry` at CPL3 on the user stack, RFLAGS.IOPL = 3 (port I/O
 * allowed), IF = 0, or IF = 1 when `interruptible` is non-zero (the guest must
 * have loaded a TSS whose RSP0 is a kernel stack). The callee must never return.
 */
        .text
        .globl  guestkit_enter_user
        .type   guestkit_enter_user, @function
guestkit_enter_user:
        movw    $USER_DS, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movq    $user_stack_top, %rax
        subq    $8, %rax                        /* as if called: RSP % 16 == 8 */
        pushq   $USER_DS                        /* SS */
        pushq   %rax                            /* RSP */
        movq    $0x3002, %rcx                   /* RFLAGS: IOPL 3, reserved bit 1 */
        testq   %rsi, %rsi
        jz      1f
        orq     $0x200, %rcx                    /* IF */
1:      pushq   %rcx
        pushq   $USER_CS                        /* CS */
        pushq   %rdi                            /* RIP */
        iretq
        .size   guestkit_enter_user, . - guestkit_enter_user

/* ---------------------------------------------------------------- GDT, maps */
        .section .rodata.boot, "a"
        .balign 16
        .globl  gdt, gdt_end, gdt_pointer
gdt:
        .quad   0                               /* 0x00 null */
        .quad   0x00AF9A000000FFFF              /* 0x08 kernel code, 64-bit, DPL0 */
        .quad   0x00CF92000000FFFF              /* 0x10 kernel data, DPL0 */
        .quad   0x00CFF2000000FFFF              /* 0x18 user data, DPL3 */
        .quad   0x00AFFA000000FFFF              /* 0x20 user code, 64-bit, DPL3 */
        .quad   0, 0                            /* 0x28 free (room for a 64-bit TSS) */
        .quad   0x00CF9A000000FFFF              /* 0x38 kernel code, 32-bit, DPL0 (AP start-up) */
gdt_end:
        .globl  gdt_limit                       /* for the AP trampoline (GuestKit/smp.S) */
        .set    gdt_limit, gdt_end - gdt - 1
        .balign 4
        .word   0
gdt_pointer:                                    /* lgdt operand; 32-bit base suffices */
        .word   gdt_end - gdt - 1
        .long   gdt
        .long   0

        .section .data.pagetables, "aw"
        .balign 4096
        .globl  pml4
pml4:
        .quad   pdpt + PTE_FLAGS
        .fill   511, 8, 0
pdpt:
        .quad   page_directories + 0x0000 + PTE_FLAGS
        .quad   page_directories + 0x1000 + PTE_FLAGS
        .quad   page_directories + 0x2000 + PTE_FLAGS
        .quad   page_directories + 0x3000 + PTE_FLAGS
        .fill   508, 8, 0
page_directories:                               /* 4 x 512 entries of 2 MiB: 0 - 4 GiB */
        .set    page, 0
        .rept   2048
        .quad   (page << 21) | PTE_FLAGS | PTE_PS
        .set    page, page + 1
        .endr

/* ------------------------------------------------------------------ stacks */
        .section .noinit, "aw", @nobits
        .balign 16
boot_stack:
        .skip   64 * 1024
boot_stack_top:
        .balign 16
user_stack:
        .skip   64 * 1024
user_stack_top:
