// Native snippet runner: see include/CX86Native.h.
//
// cx86_enter (below, in assembly) saves the callee-saved registers and the host stack
// pointer, loads XMM0-15, RFLAGS and all sixteen GPRs (RSP too) from the state, and jumps to
// the code area. The code area holds the snippet followed by `jmp [rip+0]; .quad cx86_exit`.
// cx86_exit stores the GPRs, switches back to the host stack, stores RFLAGS (before any
// flag-changing instruction) and XMM, clears DF and returns to C. A fault in the snippet
// arrives as a signal on an alternate stack and siglongjmps back to cx86_run.

#define _GNU_SOURCE
#include "CX86Native.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

void cx86_enter(CX86State *state, const void *code);
void cx86_exit(void);

__asm__(
    ".text\n"
    ".globl cx86_enter\n"
    ".hidden cx86_enter\n"
    ".type cx86_enter,@function\n"
    "cx86_enter:\n"
    "  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  mov %rsp, cx86_host_rsp(%rip)\n"
    "  mov %rdi, cx86_state_ptr(%rip)\n"
    "  mov %rsi, cx86_code_ptr(%rip)\n"
    "  movdqu 136(%rdi), %xmm0\n  movdqu 152(%rdi), %xmm1\n  movdqu 168(%rdi), %xmm2\n"
    "  movdqu 184(%rdi), %xmm3\n  movdqu 200(%rdi), %xmm4\n  movdqu 216(%rdi), %xmm5\n"
    "  movdqu 232(%rdi), %xmm6\n  movdqu 248(%rdi), %xmm7\n  movdqu 264(%rdi), %xmm8\n"
    "  movdqu 280(%rdi), %xmm9\n  movdqu 296(%rdi), %xmm10\n  movdqu 312(%rdi), %xmm11\n"
    "  movdqu 328(%rdi), %xmm12\n  movdqu 344(%rdi), %xmm13\n  movdqu 360(%rdi), %xmm14\n"
    "  movdqu 376(%rdi), %xmm15\n"
    "  pushq 128(%rdi)\n  popfq\n"
    "  mov 0(%rdi), %rax\n  mov 8(%rdi), %rcx\n  mov 16(%rdi), %rdx\n  mov 24(%rdi), %rbx\n"
    "  mov 32(%rdi), %rsp\n  mov 40(%rdi), %rbp\n  mov 48(%rdi), %rsi\n"
    "  mov 64(%rdi), %r8\n  mov 72(%rdi), %r9\n  mov 80(%rdi), %r10\n  mov 88(%rdi), %r11\n"
    "  mov 96(%rdi), %r12\n  mov 104(%rdi), %r13\n  mov 112(%rdi), %r14\n  mov 120(%rdi), %r15\n"
    "  mov 56(%rdi), %rdi\n"
    "  jmp *cx86_code_ptr(%rip)\n"
    ".globl cx86_exit\n"
    ".hidden cx86_exit\n"
    "cx86_exit:\n"
    "  mov %rdi, cx86_saved_rdi(%rip)\n"
    "  mov cx86_state_ptr(%rip), %rdi\n"
    "  mov %rax, 0(%rdi)\n  mov %rcx, 8(%rdi)\n  mov %rdx, 16(%rdi)\n  mov %rbx, 24(%rdi)\n"
    "  mov %rsp, 32(%rdi)\n  mov %rbp, 40(%rdi)\n  mov %rsi, 48(%rdi)\n"
    "  mov %r8, 64(%rdi)\n  mov %r9, 72(%rdi)\n  mov %r10, 80(%rdi)\n  mov %r11, 88(%rdi)\n"
    "  mov %r12, 96(%rdi)\n  mov %r13, 104(%rdi)\n  mov %r14, 112(%rdi)\n  mov %r15, 120(%rdi)\n"
    "  mov cx86_host_rsp(%rip), %rsp\n"
    "  pushfq\n  popq 128(%rdi)\n"
    "  cld\n"
    "  mov cx86_saved_rdi(%rip), %rax\n  mov %rax, 56(%rdi)\n"
    "  movdqu %xmm0, 136(%rdi)\n  movdqu %xmm1, 152(%rdi)\n  movdqu %xmm2, 168(%rdi)\n"
    "  movdqu %xmm3, 184(%rdi)\n  movdqu %xmm4, 200(%rdi)\n  movdqu %xmm5, 216(%rdi)\n"
    "  movdqu %xmm6, 232(%rdi)\n  movdqu %xmm7, 248(%rdi)\n  movdqu %xmm8, 264(%rdi)\n"
    "  movdqu %xmm9, 280(%rdi)\n  movdqu %xmm10, 296(%rdi)\n  movdqu %xmm11, 312(%rdi)\n"
    "  movdqu %xmm12, 328(%rdi)\n  movdqu %xmm13, 344(%rdi)\n  movdqu %xmm14, 360(%rdi)\n"
    "  movdqu %xmm15, 376(%rdi)\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
    "  ret\n"
    ".bss\n"
    ".align 8\n"
    "cx86_host_rsp: .zero 8\n"
    "cx86_state_ptr: .zero 8\n"
    "cx86_code_ptr: .zero 8\n"
    "cx86_saved_rdi: .zero 8\n"
    ".text\n");

_Static_assert(sizeof(CX86State) == 136 + 256, "CX86State layout is fixed by the assembly");

static pthread_mutex_t cx86_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t cx86_once = PTHREAD_ONCE_INIT;
static uint8_t *cx86_region;
static sigjmp_buf cx86_jump;
static volatile sig_atomic_t cx86_active;
static struct sigaction cx86_previous[4];
static const int cx86_signals[4] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS};
static __thread int cx86_has_alternate_stack;

static void cx86_handler(int sig, siginfo_t *info, void *context) {
    if (cx86_active) {
        cx86_active = 0;
        siglongjmp(cx86_jump, sig);
    }
    // Not a snippet's fault: hand it to whoever handled it before (the fault recurs on return).
    for (int i = 0; i < 4; i++) {
        if (cx86_signals[i] == sig) sigaction(sig, &cx86_previous[i], NULL);
    }
    (void)info; (void)context;
}

static void cx86_setup(void) {
    static const uint64_t candidates[] = {0x100000, 0x200000, 0x400000, 0x1000000, 0x10000000, 0x20000000};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        void *want = (void *)(uintptr_t)candidates[i];
        void *got = mmap(want, CX86_REGION_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (got == want) { cx86_region = got; break; }
        if (got != MAP_FAILED) munmap(got, CX86_REGION_SIZE);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = cx86_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < 4; i++) sigaction(cx86_signals[i], &action, &cx86_previous[i]);
}

uint64_t cx86_region_base(void) {
    pthread_once(&cx86_once, cx86_setup);
    return (uint64_t)(uintptr_t)cx86_region;
}

int cx86_run(const uint8_t *code, size_t length, CX86State *state) {
    if (cx86_region_base() == 0 || length > 0xf00) return -1;
    if (!cx86_has_alternate_stack) {
        stack_t alternate;
        alternate.ss_sp = malloc(1 << 16);
        alternate.ss_size = 1 << 16;
        alternate.ss_flags = 0;
        if (alternate.ss_sp == NULL || sigaltstack(&alternate, NULL) != 0) return -1;
        cx86_has_alternate_stack = 1;
    }
    pthread_mutex_lock(&cx86_lock);
    uint8_t *area = cx86_region + CX86_CODE_OFFSET;
    memcpy(area, code, length);
    static const uint8_t back[6] = {0xff, 0x25, 0, 0, 0, 0};  // jmp [rip+0]
    memcpy(area + length, back, sizeof back);
    uint64_t exit_address = (uint64_t)(uintptr_t)&cx86_exit;
    memcpy(area + length + sizeof back, &exit_address, 8);

    CX86State working = *state;
    int sig = sigsetjmp(cx86_jump, 1);
    if (sig == 0) {
        cx86_active = 1;
        cx86_enter(&working, area);
        cx86_active = 0;
        *state = working;
    }
    pthread_mutex_unlock(&cx86_lock);
    return sig;
}
