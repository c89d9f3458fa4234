// Native snippet runner: see include/CX86Native.h.
//
// cx86_enter (below, in assembly) saves the callee-saved registers, the host stack pointer
// and the host's FPU state (FXSAVE64), loads the snippet's x87/MMX/SSE state (FXRSTOR64),
// RFLAGS and all sixteen GPRs (RSP too) from the state, and jumps to the code area. The code
// area holds the snippet followed by `jmp [rip+0]; .quad cx86_exit`. cx86_exit stores the
// GPRs, switches back to the host stack, stores RFLAGS (before any flag-changing instruction)
// and the FPU state (FXSAVE64, a no-wait instruction: a pending x87 exception stays pending in
// the image), restores the host's FPU state, clears DF and returns to C. A fault in the snippet
// arrives as a signal on an alternate stack; the handler records the trap number, error code,
// RIP and FPU state from the signal context and siglongjmps back to cx86_run, which restores
// the host's FPU state.

#define _GNU_SOURCE
#include "CX86Native.h"

#include <pthread.h>
#include <stddef.h>
#include <ucontext.h>
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
    "  fxsave64 cx86_host_fx(%rip)\n"
    "  fxrstor64 400(%rdi)\n"
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
    "  fxsave64 400(%rdi)\n"
    "  fxrstor64 cx86_host_fx(%rip)\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
    "  ret\n"
    ".bss\n"
    ".align 8\n"
    "cx86_host_rsp: .zero 8\n"
    "cx86_state_ptr: .zero 8\n"
    "cx86_code_ptr: .zero 8\n"
    "cx86_saved_rdi: .zero 8\n"
    ".align 16\n"
    "cx86_host_fx: .zero 512\n"
    ".text\n");

_Static_assert(offsetof(CX86State, xmm) == 136, "CX86State layout is fixed by the assembly");
_Static_assert(offsetof(CX86State, fx) == 400, "CX86State layout is fixed by the assembly");

static pthread_mutex_t cx86_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t cx86_once = PTHREAD_ONCE_INIT;
static uint8_t *cx86_region;
static sigjmp_buf cx86_jump;
static volatile sig_atomic_t cx86_active;
static struct sigaction cx86_previous[4];
static const int cx86_signals[4] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS};
static __thread int cx86_has_alternate_stack;

static int32_t cx86_fault_trap;
static uint32_t cx86_fault_error;
static uint64_t cx86_fault_rip;
static uint8_t cx86_fault_fx[512];
static uint8_t cx86_host_fx_copy[512] __attribute__((aligned(16)));

static void cx86_handler(int sig, siginfo_t *info, void *context) {
    if (cx86_active) {
        cx86_active = 0;
        ucontext_t *uc = context;
        cx86_fault_trap = (int32_t)uc->uc_mcontext.gregs[REG_TRAPNO];
        cx86_fault_error = (uint32_t)uc->uc_mcontext.gregs[REG_ERR];
        cx86_fault_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
        if (uc->uc_mcontext.fpregs != NULL) {
            memcpy(cx86_fault_fx, uc->uc_mcontext.fpregs, sizeof cx86_fault_fx);
        } else {
            memset(cx86_fault_fx, 0, sizeof cx86_fault_fx);
        }
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
    memcpy(working.fx + 160, working.xmm, sizeof working.xmm);
    // The host's FPU state, to put back after a fault (the signal handler ran with a fresh one).
    __asm__ volatile("fxsave64 %0" : "=m"(cx86_host_fx_copy));
    int sig = sigsetjmp(cx86_jump, 1);
    if (sig == 0) {
        cx86_active = 1;
        cx86_enter(&working, area);
        cx86_active = 0;
        memcpy(working.xmm, working.fx + 160, sizeof working.xmm);
        working.trap = -1;
        *state = working;
    } else {
        __asm__ volatile("fxrstor64 %0" : : "m"(cx86_host_fx_copy));
        state->trap = cx86_fault_trap;
        state->error = cx86_fault_error;
        state->fault_rip = cx86_fault_rip;
        memcpy(state->fault_fx, cx86_fault_fx, sizeof state->fault_fx);
    }
    pthread_mutex_unlock(&cx86_lock);
    return sig;
}
