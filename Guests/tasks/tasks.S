/*
 * tasks: hardware task switching in 32-bit protected mode (Intel SDM Vol. 3A ch. 8).
 *
 * tasks_run32() leaves long mode (compatibility mode, CR0.PG off, EFER.LME off), runs the
 * checks below in 32-bit protected mode without paging, records what it sees in tasks_obs[],
 * and comes back to long mode, where Tasks.swift judges and prints the observations. The
 * mechanics live here; the expectations live in Swift.
 *
 * Tasks, each with its own 32-bit TSS, stack and registers, all at CPL0 with flat segments:
 *   A  the main flow (loaded with LTR);     B  reached by JMP, jumps back;
 *   C  reached by CALL through a task gate, returns with IRET (NT);
 *   D  reached by INT 0x40 through a task gate in the IDT, returns with IRET;
 *   F  the #DF handler, through a task gate in IDT slot 8, returns with IRET.
 * Interrupt gates for #TS, #NP, #SS, #GP, #UD record the vector and error code and resume at
 * fault_fixup (a fault with no fixup set ends the run: debug exit 0x3f, status 0x7f).
 */

#define SEL_CODE64      0x08
#define SEL_DATA        0x10
#define SEL_CODE32      0x18
#define SEL_TSS_A       0x28
#define SEL_TSS_B       0x30
#define SEL_TSS_C       0x38
#define SEL_GATE_C      0x40
#define SEL_TSS_D       0x48
#define SEL_TSS_F       0x50
#define SEL_TSS_SMALL   0x58
#define SEL_LDT         0x60
#define GDT_LIMIT       0x67

#define TSS_SIZE        0x68
#define TSS_LINK        0x00
#define TSS_EIP         0x20
#define TSS_EFLAGS      0x24
#define TSS_EAX         0x28
#define TSS_ESP         0x38
#define TSS_ES          0x48
#define TSS_CS          0x4c
#define TSS_SS          0x50
#define TSS_DS          0x54
#define TSS_FS          0x58
#define TSS_GS          0x5c
#define TSS_LDT         0x60
#define TSS_IOMAP       0x66

#define MSR_EFER        0xC0000080
#define EFER_LME        (1 << 8)
#define CR0_PG          (1 << 31)
#define DEBUG_EXIT_PORT 0xf4

/* tasks_obs[] slots (Tasks.swift names them). */
#define OBS(n)          (tasks_obs + 4 * (n))

        .data
        .balign 16
        .globl  tasks_obs
tasks_obs:
        .fill   48, 4, 0
fault_vector:   .long 0
fault_error:    .long 0
fault_fixup:    .long 0
saved_rsp:      .quad 0
saved_cr3:      .quad 0
saved_cs:       .quad 0
saved_ss:       .quad 0
saved_gdtr:     .word 0
                .quad 0
saved_idtr:     .word 0
                .quad 0

        .balign 8
gdt32:
        .quad   0
        .quad   0x00af9a000000ffff              /* 0x08 64-bit code */
        .quad   0x00cf92000000ffff              /* 0x10 flat data */
        .quad   0x00cf9a000000ffff              /* 0x18 flat 32-bit code */
        .quad   0                               /* 0x20 */
        .quad   0                               /* 0x28 TSS A (filled at run time) */
        .quad   0                               /* 0x30 TSS B */
        .quad   0                               /* 0x38 TSS C */
        .quad   0x0000850000380000              /* 0x40 task gate to TSS C, DPL 0 */
        .quad   0                               /* 0x48 TSS D */
        .quad   0                               /* 0x50 TSS F */
        .quad   0                               /* 0x58 TSS with limit 0x60 (< 0x67) */
        .quad   0                               /* 0x60 LDT (task B's) */
gdt32_end:
gdt32_pointer:
        .word   GDT_LIMIT
        .quad   gdt32

        .balign 8
idt32:
        .fill   0x41, 8, 0
idt32_end:
idt32_pointer:
        .word   idt32_end - idt32 - 1
        .long   idt32

        .balign 8
ldt_b:  .quad   0, 0                            /* an empty LDT: only its selector matters */

        .balign 64
tss_a:  .fill   TSS_SIZE, 1, 0
        .balign 64
tss_b:  .fill   TSS_SIZE, 1, 0
        .balign 64
tss_c:  .fill   TSS_SIZE, 1, 0
        .balign 64
tss_d:  .fill   TSS_SIZE, 1, 0
        .balign 64
tss_f:  .fill   TSS_SIZE, 1, 0
        .balign 64
tss_small: .fill TSS_SIZE, 1, 0

        .section .noinit, "aw", @nobits
        .balign 16
stack_a: .skip  4096
stack_a_top:
stack_b: .skip  1024
stack_b_top:
stack_c: .skip  1024
stack_c_top:
stack_d: .skip  1024
stack_d_top:
stack_f: .skip  1024
stack_f_top:

        .text
/* ------------------------------------------------------------------ 64-bit side */
        .code64

/* set_tss(rdi = descriptor, esi = base, edx = limit): an available 32-bit TSS descriptor, DPL 0. */
set_tss:
        movw    %dx, (%rdi)
        movw    %si, 2(%rdi)
        movl    %esi, %eax
        shrl    $16, %eax
        movb    %al, 4(%rdi)
        movb    $0x89, 5(%rdi)
        movb    $0, 6(%rdi)
        movb    %ah, 7(%rdi)
        ret

/* set_task(rdi = TSS, esi = entry, edx = stack top): a flat CPL0 task starting at entry. */
set_task:
        movl    %esi, TSS_EIP(%rdi)
        movl    $0x2, TSS_EFLAGS(%rdi)
        movl    %edx, TSS_ESP(%rdi)
        movl    $SEL_CODE32, TSS_CS(%rdi)
        movl    $SEL_DATA, TSS_SS(%rdi)
        movl    $SEL_DATA, TSS_DS(%rdi)
        movl    $SEL_DATA, TSS_ES(%rdi)
        movl    $SEL_DATA, TSS_FS(%rdi)
        movl    $SEL_DATA, TSS_GS(%rdi)
        movw    $TSS_SIZE, TSS_IOMAP(%rdi)
        ret

/* set_gate(rdi = IDT slot, esi = handler): a 32-bit interrupt gate to SEL_CODE32, DPL 0. */
set_gate:
        movw    %si, (%rdi)
        movw    $SEL_CODE32, 2(%rdi)
        movb    $0, 4(%rdi)
        movb    $0x8e, 5(%rdi)
        shrl    $16, %esi
        movw    %si, 6(%rdi)
        ret

/* set_task_gate(rdi = IDT slot, esi = TSS selector). */
set_task_gate:
        movq    $0, (%rdi)
        movw    %si, 2(%rdi)
        movb    $0x85, 5(%rdi)
        ret

/* void tasks_run32(void): the whole 32-bit excursion; returns in long mode. */
        .globl  tasks_run32
        .type   tasks_run32, @function
tasks_run32:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, saved_rsp(%rip)
        sgdt    saved_gdtr(%rip)
        sidt    saved_idtr(%rip)
        movq    %cr3, %rax
        movq    %rax, saved_cr3(%rip)
        movq    %cs, %rax
        movq    %rax, saved_cs(%rip)
        movq    %ss, %rax
        movq    %rax, saved_ss(%rip)

        /* Descriptors and TSSes whose addresses the assembler cannot split. */
        leaq    gdt32+SEL_TSS_A(%rip), %rdi
        leaq    tss_a(%rip), %rsi
        movl    $(TSS_SIZE - 1), %edx
        call    set_tss
        leaq    gdt32+SEL_TSS_B(%rip), %rdi
        leaq    tss_b(%rip), %rsi
        movl    $(TSS_SIZE - 1), %edx
        call    set_tss
        leaq    gdt32+SEL_TSS_C(%rip), %rdi
        leaq    tss_c(%rip), %rsi
        movl    $(TSS_SIZE - 1), %edx
        call    set_tss
        leaq    gdt32+SEL_TSS_D(%rip), %rdi
        leaq    tss_d(%rip), %rsi
        movl    $(TSS_SIZE - 1), %edx
        call    set_tss
        leaq    gdt32+SEL_TSS_F(%rip), %rdi
        leaq    tss_f(%rip), %rsi
        movl    $(TSS_SIZE - 1), %edx
        call    set_tss
        leaq    gdt32+SEL_TSS_SMALL(%rip), %rdi
        leaq    tss_small(%rip), %rsi
        movl    $0x60, %edx
        call    set_tss
        leaq    gdt32+SEL_LDT(%rip), %rdi       /* the LDT descriptor: like a TSS, type 2 */
        leaq    ldt_b(%rip), %rsi
        movl    $15, %edx
        call    set_tss
        movb    $0x82, gdt32+SEL_LDT+5(%rip)

        leaq    tss_a(%rip), %rdi
        movw    $TSS_SIZE, TSS_IOMAP(%rdi)
        leaq    tss_b(%rip), %rdi
        leaq    task_b(%rip), %rsi
        leaq    stack_b_top(%rip), %rdx
        call    set_task
        movl    $0xb0b0b0b0, tss_b+TSS_EAX(%rip)
        movl    $SEL_LDT, tss_b+TSS_LDT(%rip)
        leaq    tss_c(%rip), %rdi
        leaq    task_c(%rip), %rsi
        leaq    stack_c_top(%rip), %rdx
        call    set_task
        leaq    tss_d(%rip), %rdi
        leaq    task_d(%rip), %rsi
        leaq    stack_d_top(%rip), %rdx
        call    set_task
        leaq    tss_f(%rip), %rdi
        leaq    task_f(%rip), %rsi
        leaq    stack_f_top(%rip), %rdx
        call    set_task
        leaq    tss_small(%rip), %rdi
        leaq    task_b(%rip), %rsi
        leaq    stack_b_top(%rip), %rdx
        call    set_task

        leaq    idt32+8*8(%rip), %rdi
        movl    $SEL_TSS_F, %esi
        call    set_task_gate
        leaq    idt32+0x40*8(%rip), %rdi
        movl    $SEL_TSS_D, %esi
        call    set_task_gate
        leaq    idt32+6*8(%rip), %rdi
        leaq    fault_6(%rip), %rsi
        call    set_gate
        leaq    idt32+10*8(%rip), %rdi
        leaq    fault_10(%rip), %rsi
        call    set_gate
        leaq    idt32+11*8(%rip), %rdi
        leaq    fault_11(%rip), %rsi
        call    set_gate
        leaq    idt32+12*8(%rip), %rdi
        leaq    fault_12(%rip), %rsi
        call    set_gate
        leaq    idt32+13*8(%rip), %rdi
        leaq    fault_13(%rip), %rsi
        call    set_gate

        /* To compatibility mode through the new GDT's 32-bit code segment. */
        lgdt    gdt32_pointer(%rip)
        pushq   $SEL_CODE32
        leaq    in_compat(%rip), %rax
        pushq   %rax
        lretq

/* ------------------------------------------------------------------ 32-bit side */
        .code32
in_compat:
        movw    $SEL_DATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    $stack_a_top, %esp
        /* Out of IA-32e mode: paging off (LMA clears), then EFER.LME off. */
        movl    %cr0, %eax
        andl    $~CR0_PG, %eax
        movl    %eax, %cr0
        movl    $MSR_EFER, %ecx
        rdmsr
        andl    $~EFER_LME, %eax
        wrmsr
        movl    $1, OBS(0)                      /* reached 32-bit protected mode */
        lidt    idt32_pointer
        movw    $SEL_TSS_A, %ax
        ltr     %ax
        clts

        call    checks32

        /* Back to long mode: the boot stub's page tables, EFER.LME, paging on. */
        movl    saved_cr3, %eax
        movl    %eax, %cr3
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $CR0_PG, %eax
        movl    %eax, %cr0
        ljmp    $SEL_CODE64, $back_in_long_mode

        .code64
back_in_long_mode:
        lgdt    saved_gdtr(%rip)
        lidt    saved_idtr(%rip)
        movq    saved_ss(%rip), %rax
        movw    %ax, %ss
        movw    %ax, %ds
        movw    %ax, %es
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        movq    saved_rsp(%rip), %rsp
        pushq   saved_cs(%rip)
        leaq    1f(%rip), %rax
        pushq   %rax
        lretq
1:      popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret
        .size   tasks_run32, . - tasks_run32

        .code32
/* Records and clears the last fault: vector to OBS(\v), error code to OBS(\e). */
.macro  TAKE_FAULT v, e
        movl    fault_vector, %eax
        movl    %eax, OBS(\v)
        movl    fault_error, %eax
        movl    %eax, OBS(\e)
        movl    $0, fault_vector
        movl    $0, fault_error
.endm

checks32:
        /* 1. JMP to TSS B; B jumps back to A, resuming after this JMP. */
        str     %ax
        movzwl  %ax, %eax
        movl    %eax, OBS(1)
        ljmp    $SEL_TSS_B, $0
        movzbl  gdt32+SEL_TSS_A+5, %eax
        movl    %eax, OBS(6)
        movzbl  gdt32+SEL_TSS_B+5, %eax
        movl    %eax, OBS(7)
        movl    %cr0, %eax
        movl    %eax, OBS(8)
        movl    tss_b+TSS_EIP, %eax             /* where B will resume: after its JMP */
        movl    %eax, OBS(9)
        clts

        /* 2. CALL through a task gate to C; C returns with IRET. */
        lcall   $SEL_GATE_C, $0
        movl    $1, OBS(14)
        movzbl  gdt32+SEL_TSS_A+5, %eax
        movl    %eax, OBS(15)
        movzbl  gdt32+SEL_TSS_C+5, %eax
        movl    %eax, OBS(16)
        movl    tss_c+TSS_EFLAGS, %eax
        movl    %eax, OBS(17)
        movzwl  tss_c+TSS_LINK, %eax
        movl    %eax, OBS(18)
        pushfl
        popl    %eax
        movl    %eax, OBS(19)
        clts

        /* 3. JMP to a busy TSS (our own): #GP(selector). */
        movl    $1f, fault_fixup
        ljmp    $SEL_TSS_A, $0
1:      TAKE_FAULT 20, 21

        /* 4. JMP to a TSS whose limit is below 67h: #TS(selector). */
        movl    $1f, fault_fixup
        ljmp    $SEL_TSS_SMALL, $0
1:      TAKE_FAULT 22, 23
        movzbl  gdt32+SEL_TSS_SMALL+5, %eax
        movl    %eax, OBS(24)

        /* 5. INT 0x40 through a task gate to D; D returns with IRET. */
        movl    $0x4040, %ebx
        int     $0x40
        movl    %ebx, OBS(29)                   /* A's EBX, restored from its TSS */
        movzbl  gdt32+SEL_TSS_D+5, %eax
        movl    %eax, OBS(30)
        clts

        /* 6. A #GP whose gate is not present: #NP while delivering it, a double fault, taken
         *    by task F through the task gate in IDT slot 8. F resumes A at df_resume. */
        andb    $0x7f, idt32+13*8+5
        .globl  tasks_df_instruction
tasks_df_instruction:
        ljmp    $SEL_TSS_A, $0
        movl    $0xbad, OBS(35)                 /* not reached: F moves A's EIP on */
        .globl  tasks_df_resume
tasks_df_resume:
        orb     $0x80, idt32+13*8+5
        movl    $1, OBS(36)
        clts
        ret

/* Task B: records TR, its EAX and EFLAGS from the TSS, its LDTR; jumps back to A. */
task_b:
        movl    %eax, OBS(3)
        str     %ax
        movzwl  %ax, %eax
        movl    %eax, OBS(2)
        pushfl
        popl    %eax
        movl    %eax, OBS(4)
        sldt    %ax
        movzwl  %ax, %eax
        movl    %eax, OBS(5)
        ljmp    $SEL_TSS_A, $0
        .globl  tasks_b_resume
tasks_b_resume:
        jmp     task_b

/* Task C: TR, EFLAGS (NT), the link field, both busy bits while nested; IRET back. */
task_c:
        str     %ax
        movzwl  %ax, %eax
        movl    %eax, OBS(10)
        pushfl
        popl    %eax
        movl    %eax, OBS(11)
        movzbl  gdt32+SEL_TSS_A+5, %eax
        movl    %eax, OBS(12)
        movzbl  gdt32+SEL_TSS_C+5, %eax
        movl    %eax, OBS(13)
        iret
        jmp     task_c

/* Task D (INT 0x40): TR, EFLAGS, link, A's saved EBX and EIP; IRET back. */
task_d:
        str     %ax
        movzwl  %ax, %eax
        movl    %eax, OBS(25)
        pushfl
        popl    %eax
        movl    %eax, OBS(26)
        movzwl  tss_d+TSS_LINK, %eax
        movl    %eax, OBS(27)
        movl    tss_a+TSS_EAX+12, %eax          /* A's EBX as saved in its TSS */
        movl    %eax, OBS(28)
        iret
        jmp     task_d

/* Task F (#DF): the error code on its own stack, the link, A's saved EIP (the faulting
 * instruction); moves A on to tasks_df_resume and returns with IRET. */
task_f:
        popl    %eax
        movl    %eax, OBS(31)
        movzwl  tss_f+TSS_LINK, %eax
        movl    %eax, OBS(32)
        movl    tss_a+TSS_EIP, %eax
        movl    %eax, OBS(33)
        movl    %esp, OBS(34)
        movl    $tasks_df_resume, tss_a+TSS_EIP
        iret
        jmp     task_f

/* Fault handlers (interrupt gates): record, resume at fault_fixup. */
fault_6:
        pushl   $0                              /* #UD has no error code */
        movl    $6, fault_vector
        jmp     fault_common
fault_10:
        movl    $10, fault_vector
        jmp     fault_common
fault_11:
        movl    $11, fault_vector
        jmp     fault_common
fault_12:
        movl    $12, fault_vector
        jmp     fault_common
fault_13:
        movl    $13, fault_vector
fault_common:
        popl    fault_error
        movl    fault_fixup, %eax
        testl   %eax, %eax
        jz      1f
        movl    %eax, (%esp)
        movl    $0, fault_fixup
        iret
1:      movl    fault_vector, %eax              /* unexpected: report it, end the run (status 0x7f) */
        movl    %eax, OBS(47)
        movl    $unexpected_text, %esi
        call    put_text
        movl    fault_vector, %eax
        call    put_hex32
        movl    $error_text, %esi
        call    put_text
        movl    fault_error, %eax
        call    put_hex32
        movl    $eip_text, %esi
        call    put_text
        movl    (%esp), %eax
        call    put_hex32
        movb    $10, %al
        call    put_char
        movl    $0x3f, %eax
        outl    %eax, $DEBUG_EXIT_PORT
2:      cli
        hlt
        jmp     2b

/* Console output from 32-bit code (the COM1 data register; the UART needs no waiting here). */
put_char:
        movw    $0x3f8, %dx
        outb    %al, %dx
        ret
put_text:                                       /* esi: NUL-terminated text */
        lodsb
        testb   %al, %al
        jz      1f
        call    put_char
        jmp     put_text
1:      ret
put_hex32:                                      /* eax: printed as 8 hex digits */
        movl    %eax, %ebx
        movl    $8, %ecx
1:      roll    $4, %ebx
        movl    %ebx, %eax
        andl    $0xf, %eax
        movb    hex_digits(%eax), %al
        call    put_char
        loop    1b
        ret

        .section .rodata
unexpected_text: .asciz "tasks: unexpected fault in 32-bit protected mode, vector "
error_text:     .asciz " error "
eip_text:       .asciz " eip "
hex_digits:     .ascii "0123456789abcdef"
