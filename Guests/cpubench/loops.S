/*
 * cpubench's five timed loops, in assembly so that the number of instructions each one retires
 * is known exactly (the counts are in the comments and in CPUBench.swift). System V ABI.
 */
        .text
        .code64

/* uint64_t bench_alu(uint64_t n): register ALU work.
 * 3 + 10 per iteration + 1 (ret). */
        .globl  bench_alu
bench_alu:
        mov     %rdi, %rcx
        xor     %eax, %eax
        movabs  $0x9e3779b97f4a7c15, %rdx
1:      add     %rdx, %rax
        xor     %rax, %rdx
        rol     $13, %rdx
        lea     1(%rax,%rdx,2), %rax
        sub     %rcx, %rdx
        and     $-3, %rax
        or      %rcx, %rax
        shr     $1, %rax
        dec     %rcx
        jnz     1b
        ret

/* void bench_copy(void *dst, const void *src, uint64_t qwords): a memory copy, 8 bytes at a
 * time. 6 per qword + 1 (ret). */
        .globl  bench_copy
bench_copy:
1:      mov     (%rsi), %rax
        mov     %rax, (%rdi)
        add     $8, %rsi
        add     $8, %rdi
        dec     %rdx
        jnz     1b
        ret

/* uint64_t bench_sieve(uint8_t *flags, uint64_t size, uint64_t counters[2]): counts the primes
 * below `size` with a byte-per-number sieve; counters receives [0] the outer-loop iterations and
 * [1] how many of them found a prime. Instructions retired (CPUBench.swift computes this):
 *   fill   4 + 4 per qword (size / 8 qwords)
 *   mark   3 + 9 per outer iteration + 3 per prime found + 4 per inner (marking) iteration
 *          + 2 (store the counters)
 *   count  3 + 5 per number in [2, size) + 1 (ret)
 * Registers: rdi flags, rsi size, rdx counters. */
        .globl  bench_sieve
bench_sieve:
        movabs  $0x0101010101010101, %rax
        mov     %rsi, %r8
        shr     $3, %r8
        xor     %ecx, %ecx
2:      mov     %rax, (%rdi,%rcx,8)
        inc     %rcx
        cmp     %r8, %rcx
        jb      2b

        mov     $2, %ecx
        xor     %r9d, %r9d                      /* outer iterations */
        xor     %r10d, %r10d                    /* primes found by the outer loop */
3:      movzbl  (%rdi,%rcx), %eax
        inc     %r9
        test    %eax, %eax
        jz      5f
        inc     %r10                            /* a prime: mark from i * i */
        mov     %rcx, %r11
        imul    %rcx, %r11
4:      movb    $0, (%rdi,%r11)
        add     %rcx, %r11
        cmp     %rsi, %r11
        jb      4b
5:      inc     %rcx
        mov     %rcx, %rax
        imul    %rcx, %rax
        cmp     %rsi, %rax
        jb      3b
        mov     %r9, 0(%rdx)
        mov     %r10, 8(%rdx)

        xor     %eax, %eax
        mov     $2, %ecx
        xor     %r8d, %r8d
6:      movzbl  (%rdi,%rcx), %r8d
        add     %r8, %rax
        inc     %rcx
        cmp     %rsi, %rcx
        jb      6b
        ret

/* uint64_t bench_calls(uint64_t n): a loop calling a leaf with a data-dependent branch.
 * 2 + per iteration 5 + leaf (4 when odd, 5 when even) + 2 at the end. */
        .globl  bench_calls
bench_calls:
        mov     %rdi, %rcx
        xor     %r8d, %r8d
1:      mov     %rcx, %rdi
        call    bench_leaf
        add     %rax, %r8
        dec     %rcx
        jnz     1b
        mov     %r8, %rax
        ret
bench_leaf:
        test    $1, %dil
        jz      2f
        lea     1(%rdi,%rdi), %rax
        ret
2:      mov     %rdi, %rax
        shr     $1, %rax
        ret

/* uint64_t bench_dispatch(uint64_t n, const uint8_t program[256]): a bytecode interpreter's
 * jump-table dispatch over a 256-byte program of operations 0-3.
 * 3 + 7 per iteration + 1 (ret). */
        .globl  bench_dispatch
bench_dispatch:
        xor     %eax, %eax
        xor     %edx, %edx
        mov     %rdi, %rcx
1:      movzbl  (%rsi,%rdx), %r8d
        inc     %dl
        jmp     *dispatch_table(,%r8,8)
op0:    add     $3, %rax
        jmp     7f
op1:    xor     %rcx, %rax
        jmp     7f
op2:    rol     $5, %rax
        jmp     7f
op3:    sub     %rdx, %rax
        jmp     7f
7:      dec     %rcx
        jnz     1b
        ret

        .section .rodata
        .balign 8
dispatch_table:
        .quad   op0, op1, op2, op3
