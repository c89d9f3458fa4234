/* cpuhog's loop: uint64_t hog_spin(uint64_t n, uint64_t state), n >= 1 iterations of four
 * register instructions; returns the new state (so the work cannot be optimised away). */
        .text
        .code64
        .globl  hog_spin
hog_spin:
        movq    %rsi, %rax
1:      addq    %rdi, %rax
        rorq    $7, %rax
        decq    %rdi
        jnz     1b
        ret
